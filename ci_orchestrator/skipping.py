"""What a run may leave out: steps with no change under their `paths:`, and steps whose
`inputs:` are up to date (their fingerprint matches a recorded run in which they passed).

Both are skips on purpose: the steps after them still run when their own filters and
fingerprints say so, and `--rerun-failed` does not count them as failures. `--force` (every step)
or `--force STEP` runs a step regardless.

- **Paths.** The range under test comes from `changes.change_range`: the pushed range in the
  pre-push hook, the pull request or the push in GitHub Actions, `--changed-since REF` locally.
  A plain local run has no range, so no path filter applies. When the range cannot be known (a
  commit missing from a shallow clone), the steps run and one note says why.
- **Inputs.** A step's fingerprint is its command, the env the pipeline sets, its cwd, the
  content of its `inputs:` and the fingerprints of the steps it needs (`inputs.py`). A step that
  declares `inputs:` is up to date when the journal has a run in which it passed with the same
  fingerprint and, when it declares `outputs:`, the output cache holds them to put back. In
  GitHub Actions only `cache: trust-history` steps are, against CI runs of the base branch or of
  this same branch/pull request.

Globs are relative to the pipeline file's folder, as every path in the file is.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from ci_orchestrator.render import plural

if TYPE_CHECKING:
    from ci_orchestrator.changes import ChangeRange
    from ci_orchestrator.gitinfo import RunContext
    from ci_orchestrator.inputs import OutputCache
    from ci_orchestrator.journal import JournalStore, Reuse
    from ci_orchestrator.model import Pipeline, Step

# The reasons of the two skips; `--rerun-failed` and reports recognise them by these prefixes.
UNCHANGED = "no changes under "
UP_TO_DATE = "up to date"
ALL = "*"  # `--force` with no step: every step


class Decision(NamedTuple):
    """Whether a step runs, and why."""

    runs: bool
    why: str  # the skip reason; for a step that runs, what made it run ('' when nothing special)
    reuse: Reuse | None = None  # the run whose pass makes it up to date


class Plan(NamedTuple):
    root: Path  # the repository's top (the pipeline's folder outside git): globs are matched there
    prefix: str  # the pipeline's folder relative to `root` ('' or 'sub/dir/')
    decisions: dict[str, Decision]
    notes: list[str]  # one line each, for the user: a range that cannot be known, ...
    fingerprints: dict[str, str]  # every step's input fingerprint, when any step has inputs
    saved_ms: dict[str, float]  # what each skipped step would have taken (its recent median)
    values: dict[str, str]  # the CIO_* values up-to-date steps passed on when they ran


def skipped_on_purpose(reason: str) -> bool:
    """A step left out because nothing it depends on changed (not a failure to rerun)."""
    return reason.startswith((UNCHANGED, UP_TO_DATE))


def uses_skipping(pipeline: Pipeline) -> bool:
    return any(s.paths or s.inputs for s in pipeline.steps.values())


def plan(
    pipeline: Pipeline,
    *,
    env: Mapping[str, str],
    context: RunContext,
    changed_since: str | None = None,
    force: Collection[str] = (),
    store: JournalStore | None = None,
    medians: Mapping[str, float] | None = None,
    state_dir: Path | None = None,
) -> Plan:
    """Decide, before anything runs, which steps a run leaves out."""
    from ci_orchestrator.changes import change_range, repo_prefix, toplevel

    steps = {n: s for n, s in pipeline.steps.items() if s.run is not None and not s.skip_reason}
    decisions = {name: Decision(True, "") for name in steps}
    notes: list[str] = []
    fingerprints: dict[str, str] = {}
    top = toplevel(pipeline.base_dir) if uses_skipping(pipeline) else None
    root = top or pipeline.base_dir
    prefix = (repo_prefix(pipeline.base_dir, top) or "") if top is not None else ""
    if not uses_skipping(pipeline):
        return Plan(root, prefix, decisions, notes, fingerprints, {}, {})
    forced = set(steps) if ALL in force else set(force)
    if any(s.paths for s in steps.values()):
        change = change_range(env, changed_since, root)
        if change is not None and change.files is None:
            notes.append(f"steps with `paths:` run: {change.problem or 'the range is unknown'}")
        elif change is not None:
            notes.append(f"changes: {change.source}: {plural(len(change.files or ()), 'file')}")
            for name, step in steps.items():
                if step.paths and name not in forced:
                    decisions[name] = _by_paths(step, change, prefix)
    if any(s.inputs for s in pipeline.steps.values()):
        fingerprints = _fingerprints(pipeline, root, prefix)
        cache = _output_cache(root, state_dir)
        trusted = _trusted_branches(env, context)
        # One query for the steps with any recorded pass: a first run looks none of them up.
        known = store.steps_with_inputs(pipeline.name) if store is not None else set()
        for name, step in steps.items():
            if not step.inputs or not decisions[name].runs:
                continue
            decision = _by_inputs(
                pipeline.name, step, fingerprints[name], name in forced, store, trusted, known
            )
            if decision.runs and not decision.why:  # say what its paths saw, if anything
                decision = decision._replace(why=decisions[name].why)
            if decision.reuse and step.outputs and not cache.has(name, fingerprints[name]):
                run_id = decision.reuse.run_id
                decision = Decision(True, f"its outputs from run {run_id} are not cached here")
            decisions[name] = decision
    saved = {
        name: decision.reuse.duration_ms if decision.reuse else (medians or {}).get(name, 0.0)
        for name, decision in decisions.items()
        if not decision.runs
    }
    return Plan(root, prefix, decisions, notes, fingerprints, saved, {})


def apply(pipeline: Pipeline, decisions: Mapping[str, Decision]) -> Pipeline:
    """The pipeline with the steps the plan leaves out marked as skipped on purpose."""
    steps = dict(pipeline.steps)
    for name, decision in decisions.items():
        if not decision.runs:
            steps[name] = steps[name]._replace(skip_reason=decision.why)
    return pipeline._replace(steps=steps)


def restore_outputs(pipeline: Pipeline, result: Plan, state_dir: Path | None) -> Plan:
    """Put back the `outputs:` of the steps that are up to date, and the `CIO_*` values they
    passed on when they ran. A step whose outputs cannot be put back (a corrupt entry, which is
    dropped) runs instead, saying why."""
    cache = _output_cache(result.root, state_dir)
    decisions = dict(result.decisions)
    saved = dict(result.saved_ms)
    values: dict[str, str] = {}
    for name, decision in result.decisions.items():
        fingerprint = result.fingerprints.get(name)
        if decision.reuse is None or fingerprint is None:
            continue  # runs, or skipped for its paths
        values.update(_read_values(_values_file(result.root, state_dir, name, fingerprint)))
        if not pipeline.steps[name].outputs:
            continue
        restored = cache.restore(name, fingerprint)
        if not restored.ok:
            decisions[name] = Decision(True, f"its cached outputs: {restored.message}")
            saved.pop(name, None)
    return result._replace(decisions=decisions, saved_ms=saved, values=values)


def store_outputs(
    pipeline: Pipeline,
    passed: Mapping[str, Mapping[str, str]],
    result: Plan,
    state_dir: Path | None,
) -> list[str]:
    """Keep the `outputs:` of the steps that passed in this run (`passed`: each one's `CIO_*`
    values), for when they are up to date; warnings, one line each."""
    from ci_orchestrator.changes import rooted

    cache = _output_cache(result.root, state_dir)
    warnings = []
    for name, values in passed.items():
        step = pipeline.steps.get(name)
        fingerprint = result.fingerprints.get(name)
        if step is None or not step.inputs or fingerprint is None:
            continue
        if values:
            _write_values(_values_file(result.root, state_dir, name, fingerprint), values)
        if not step.outputs:
            continue
        stored = cache.store(name, fingerprint, [rooted(g, result.prefix) for g in step.outputs])
        if not stored.ok:
            warnings.append(f"{name}: {stored.message}")
    return warnings


def describe(decision: Decision) -> str:
    """For `--dry-run`: whether the step would run, and why."""
    if not decision.runs:
        return f"skip ({decision.why})"
    return decision.why


def unmatched_globs(pipeline: Pipeline) -> list[str]:
    """`paths:` and `inputs:` globs that match no file of the repository: likely typos (a glob
    that only excludes is left alone). For `validate`."""
    if not uses_skipping(pipeline):
        return []
    from ci_orchestrator.changes import PathFilter, repo_prefix, rooted, toplevel

    root = toplevel(pipeline.base_dir)
    if root is None:
        return []
    files = _repository_files(root)
    prefix = repo_prefix(pipeline.base_dir, root) or ""
    warnings = []
    for name, step in pipeline.steps.items():
        for key, globs in (("paths", step.paths), ("inputs", step.inputs)):
            for glob in globs:
                if glob.startswith("!") or PathFilter([rooted(glob, prefix)]).matching(files):
                    continue
                warnings.append(
                    f"{step.location}: steps.{name}.{key}: {glob!r} matches no file of the"
                    " repository"
                )
    return warnings


def _repository_files(root: Path) -> list[str]:
    """Tracked and untracked (not ignored) files, relative to the repository root."""
    try:
        done = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=root,
            capture_output=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return []
    return [os.fsdecode(p) for p in done.stdout.split(b"\0") if p]


# --- the parts ---


def _by_paths(step: Step, change: ChangeRange, prefix: str) -> Decision:
    from ci_orchestrator.changes import PathFilter, rooted

    matched = PathFilter([rooted(g, prefix) for g in step.paths]).matching(change.files or ())
    if not matched:
        return Decision(False, UNCHANGED + ", ".join(step.paths))
    more = f" and {plural(len(matched) - 1, 'file')}" if len(matched) > 1 else ""
    return Decision(True, f"changed: {matched[0]}{more}")


def _trusted_branches(env: Mapping[str, str], context: RunContext) -> list[str] | None:
    """In GitHub Actions, the branches whose CI runs a `trust-history` step may reuse: the pull
    request's base, the default branch, this branch. None locally: any run of the journal."""
    if env.get("GITHUB_ACTIONS") != "true":
        return None
    branches = [env.get("GITHUB_BASE_REF"), context.default_branch, context.branch]
    return list(dict.fromkeys(b for b in branches if b))


def _by_inputs(
    pipeline: str,
    step: Step,
    fingerprint: str,
    forced: bool,
    store: JournalStore | None,
    trusted: list[str] | None,
    known: set[str],
) -> Decision:
    if forced:
        return Decision(True, "forced (--force)")
    if trusted is not None and step.cache != "trust-history":
        return Decision(True, "")  # in GitHub Actions only `cache: trust-history` reuses a pass
    if store is None:
        return Decision(True, "no journal to tell whether its inputs changed")
    if step.name not in known:
        return Decision(True, "")
    reuse = store.passed_with_inputs(pipeline, step.name, fingerprint, trusted)
    if reuse is None:
        return Decision(True, "")
    where = f"in run {reuse.run_id}"
    if trusted is not None and reuse.branch and reuse.sha:
        where = f"on {reuse.branch} at {reuse.sha[:7]}"
    return Decision(False, f"{UP_TO_DATE} (passed {where})", reuse)


def _fingerprints(pipeline: Pipeline, root: Path, prefix: str) -> dict[str, str]:
    from ci_orchestrator.changes import rooted
    from ci_orchestrator.inputs import InputTree, StepInputs, input_fingerprints

    tree = InputTree.read(root)
    steps = {
        name: StepInputs(
            step.run,
            dict(step.env),
            step.cwd,
            tuple(rooted(g, prefix) for g in step.inputs),
            step.needs,
        )
        for name, step in pipeline.steps.items()
    }
    return input_fingerprints(steps, tree)


# The largest `outputs:` entry kept, in bytes (default: OutputCache's).
CACHE_LIMIT_ENV = "CI_ORCHESTRATOR_OUTPUT_CACHE_LIMIT"


def _output_cache(root: Path, state_dir: Path | None) -> OutputCache:
    from ci_orchestrator.inputs import OutputCache
    from ci_orchestrator.state import STATE_DIR

    limit = os.environ.get(CACHE_LIMIT_ENV, "")
    folder = state_dir or root / STATE_DIR
    if limit.isdigit():
        return OutputCache(root, folder, limit_bytes=int(limit))
    return OutputCache(root, folder)


def _values_file(root: Path, state_dir: Path | None, step: str, fingerprint: str) -> Path:
    from ci_orchestrator.state import STATE_DIR, safe_filename

    folder = (state_dir or root / STATE_DIR) / "cache" / "values" / safe_filename(step)
    return folder / f"{fingerprint}.json"


def _write_values(path: Path, values: Mapping[str, str]) -> None:
    """A step's `CIO_*` values beside its cached outputs (a failed write only costs a rerun)."""
    import json

    temp = path.with_name(f".{path.name}.{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temp.write_text(json.dumps(dict(values)))
        os.replace(temp, path)
    except OSError:
        temp.unlink(missing_ok=True)


def _read_values(path: Path) -> dict[str, str]:
    import json

    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(k): str(v) for k, v in data.items()}
