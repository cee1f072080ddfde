"""Which files changed in the range under test, and the globs that select files.

**Globs** (`PathFilter`) follow GitHub's `on.push.paths` filter patterns, as dorny/paths-filter
does, matched against repository-relative POSIX paths:

- `*` matches any characters but `/`; `?` one character but `/`; `[abc]`, `[a-z]`, `[!abc]` one
  character of (not of) a set, never `/`; `\\` escapes the character after it.
- `**` matches any characters, `/` included: `docs/**` is everything under docs/, `**.js` every
  .js file at any depth. As a whole path segment, `**/` also matches no folder at all:
  `**/*.py` and `**/README.md` match at the top too, `src/**/test_*.py` matches src/test_a.py.
- A pattern matches the whole path, from the repository root. A pattern without a `/` is no
  exception (GitHub's rule, unlike .gitignore): `*.md` is the .md files at the top only; write
  `**.md` or `**/*.md` for every depth. Files and folders whose names start with a dot are
  matched like any other (`*` matches `.env`).
- Patterns are tried in order and the last one that matches decides; a `!` pattern excludes.
  When the first pattern is a `!` pattern, everything it does not exclude matches (as if `**`
  came first).
- GitHub's `?` and `+` are regex-like quantifiers ("zero or one of the preceding character");
  here `?` is the usual glob `?` (one character), as in dorny/paths-filter, and `+` is literal.
- `.` segments are dropped and `..` goes up a folder (so that a glob written relative to a
  subfolder can be rebased with `rooted`); `PathFilter.check` refuses what leaves the
  repository, an absolute path, an empty glob, and a trailing `/` (which would match no file).

**Relative to what.** `PathFilter` globs and `ChangeRange.files` are relative to the top of the
git work tree, like GitHub's paths filter and lefthook's `glob`. Globs written relative to another
folder (a pipeline file's) become root-relative with `rooted(glob, repo_prefix(folder, top))`.

**The range** (`change_range`): `--changed-since REF` when given; else in the pre-push hook the
pushed range; else in GitHub Actions the pull request (merge base to head) or the push (before to
after); else none, and no path filter applies. A commit the range needs that this clone lacks (a
shallow checkout) is fetched from origin once, in bounded time and never prompting; when the range
still cannot be known, `files` is None and `problem` says why, so that steps run rather than being
skipped on a guess.
"""

from __future__ import annotations

import os
import re
import subprocess
from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from ci_orchestrator.gitinfo import read_event

GIT_TIMEOUT_S = 10.0
FETCH_TIMEOUT_S = 20.0
# How much history a shallow clone fetches to find a merge base (a pull request's fork point).
MERGE_BASE_DEPTH = 500
# What a new branch is compared with in the pre-push hook, when the hook found no fork point.
_DEFAULT_REFS = ("refs/remotes/origin/HEAD", "refs/heads/main", "refs/heads/master")
_NO_COMMIT = "0" * 40
# Name-only diffs of the whole tree: a `diff.relative` config would hide changes outside the
# current folder; renames count as a deletion and an addition (both paths changed).
_DIFF = ("-c", "diff.relative=false", "diff", "--name-only", "--no-renames", "-z")
_UNTRACKED = ("ls-files", "-z", "--others", "--exclude-standard")


# --- globs ---


class _Pattern:
    """One glob, compiled: the paths it matches all start with `prefix`. The common shapes are
    matched with string tests, without a regular expression (compiling one per glob would
    cost more than matching, for a run that reads a pipeline's globs once)."""

    __slots__ = ("_regex", "kind", "negated", "prefix", "suffix", "text")

    def __init__(self, glob: str) -> None:
        self.negated = glob.startswith("!")
        self.text = _normalise(glob[1:] if self.negated else glob)
        wildcard = _WILDCARD.search(self.text)
        self.prefix = self.text if wildcard is None else self.text[: wildcard.start()]
        rest = self.text[len(self.prefix) :]
        self.suffix = rest.lstrip("*/")
        self._regex: re.Pattern[str] | None = None
        if wildcard is None:
            self.kind = "literal"  # the prefix is the whole path
        elif rest.startswith("**") and rest.strip("*") == "":
            self.kind = "under"  # `P**`: every path that starts with the prefix
        elif _WILDCARD.search(self.suffix) or "/" in self.suffix:
            self.kind = "regex"
        elif rest == "*" + self.suffix:
            self.kind = "name"  # `P*S`: S ends a name in the prefix's folder
        elif rest in ("**" + self.suffix, "**/*" + self.suffix) and self.prefix[-1:] in ("", "/"):
            self.kind = "deep"  # `P**S`, `P**/*S`: S ends a name at any depth
        else:
            self.kind = "regex"

    def matches(self, path: str) -> bool:
        if self.kind == "literal":
            return path == self.prefix
        if not path.startswith(self.prefix):
            return False
        if self.kind == "under":
            return True
        start, end = len(self.prefix), len(path) - len(self.suffix)
        if self.kind == "name":
            return end >= start and path.endswith(self.suffix) and "/" not in path[start:end]
        if self.kind == "deep":
            return end >= start and path.endswith(self.suffix)
        if self._regex is None:
            self._regex = re.compile(_translate(self.text), re.DOTALL)
        return self._regex.fullmatch(path) is not None

    def select(self, paths: Sequence[str]) -> range | list[int]:
        """The indices of the paths it matches in `paths`, sorted: only the run of paths that
        start with the literal prefix is looked at (two bisections)."""
        lo = bisect_left(paths, self.prefix)
        if self.kind == "literal":
            return range(lo, lo + 1) if lo < len(paths) and paths[lo] == self.prefix else []
        hi = bisect_left(paths, _successor(self.prefix), lo) if self.prefix else len(paths)
        if self.kind == "under":
            return range(lo, hi)
        matches = self.matches
        return [i for i in range(lo, hi) if matches(paths[i])]


class PathFilter:
    """Globs with `!` to exclude, matched against repository-relative POSIX paths; see the
    module's docstring for the rules (those of GitHub's `on.push.paths`)."""

    def __init__(self, globs: Sequence[str]) -> None:
        for glob in globs:
            problem = self.check(glob)
            if problem is not None:
                raise ValueError(f"{glob!r}: {problem}")
        self.globs = tuple(globs)
        self._patterns = tuple(_Pattern(glob) for glob in globs)
        # A filter that starts by excluding starts from everything.
        self._default = bool(self._patterns) and self._patterns[0].negated

    def matches(self, path: str) -> bool:
        for pattern in reversed(self._patterns):
            if pattern.matches(path):
                return not pattern.negated
        return self._default

    def matching(self, paths: Iterable[str]) -> list[str]:
        """The paths it matches, in their order."""
        return [path for path in paths if self.matches(path)]

    def select(
        self, paths: Sequence[str], memo: dict[str, frozenset[int]] | None = None
    ) -> list[int]:
        """The indices of the paths it matches in `paths`, which must be sorted: fast for many
        filters over one long list. `memo` keeps each pattern's matches for the next call."""
        memo = {} if memo is None else memo
        chosen: set[int] = set(range(len(paths))) if self._default else set()
        for pattern in self._patterns:
            hits = memo.get(pattern.text)
            if hits is None:
                hits = memo[pattern.text] = frozenset(pattern.select(paths))
            if pattern.negated:
                chosen -= hits
            else:
                chosen |= hits
        return sorted(chosen)

    def folders(self) -> list[str]:
        """The folders ('' for the top) that every path it matches is under: where to look."""
        if self._default:
            return [""]
        return sorted({p.prefix.rpartition("/")[0] for p in self._patterns if not p.negated})

    @staticmethod
    def check(glob: str) -> str | None:
        """Why `glob` is not a valid pattern, or None."""
        body = glob[1:] if glob.startswith("!") else glob
        if not body.strip():
            return "an empty glob matches nothing"
        if body.startswith("/"):
            return "an absolute path: globs are relative to the repository"
        if body.endswith("/"):
            return f"matches no file: write {body}** for every file under {body}"
        try:
            _normalise(body)
        except ValueError as exc:
            return str(exc)
        return None


def _normalise(glob: str) -> str:
    """The glob with `.` and empty segments dropped and `..` applied; ValueError when `..` leaves
    the repository or follows a wildcard (which folder it leaves is not known)."""
    segments: list[str] = []
    for segment in glob.split("/"):
        if segment in ("", "."):
            continue
        if segment != "..":
            segments.append(segment)
        elif not segments:
            raise ValueError("`..` leads outside the repository")
        elif _WILDCARD.search(segments[-1]):
            raise ValueError(f"`..` after the wildcard segment {segments[-1]!r}")
        else:
            segments.pop()
    return "/".join(segments)


_WILDCARD = re.compile(r"[*?\[\\]")


def _translate(glob: str) -> str:
    """The regular expression of a glob (see the module's docstring)."""
    out: list[str] = []
    i, n = 0, len(glob)
    while i < n:
        char = glob[i]
        i += 1
        if char == "\\" and i < n:
            out.append(re.escape(glob[i]))
            i += 1
        elif char == "*":
            stars = 1
            while i < n and glob[i] == "*":
                stars, i = stars + 1, i + 1
            segment_start = i - stars == 0 or glob[i - stars - 1] == "/"
            if stars == 1:
                out.append("[^/]*")
            elif segment_start and i < n and glob[i] == "/":
                out.append("(?:.*/)?")  # `**/`: any folders, or none
                i += 1
            else:
                out.append(".*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[":
            end = _class_end(glob, i)
            if end is None:
                out.append(re.escape(char))
            else:
                body = glob[i:end]
                negate = body[:1] in ("!", "^")
                body = body[1:] if negate else body
                escaped = body.replace("\\", "\\\\").replace("^", "\\^").replace("[", "\\[")
                out.append(f"(?!/)[{'^' if negate else ''}{escaped}]")
                i = end + 1
        else:
            out.append(re.escape(char))
    return "".join(out)


def _class_end(glob: str, start: int) -> int | None:
    """The index of the `]` closing a set that opens before `start` (a `]` right after `[`, or
    after `[!`, is a member), or None when it is not closed (a literal `[`)."""
    i = start
    if i < len(glob) and glob[i] in "!^":
        i += 1
    if i < len(glob) and glob[i] == "]":
        i += 1
    end = glob.find("]", i)
    return None if end == -1 else end


def _successor(prefix: str) -> str:
    """The smallest string greater than every string that starts with `prefix`."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


# --- where globs are relative to ---


def toplevel(cwd: Path | None = None) -> Path | None:
    """The top of the git work tree around `cwd`, or None outside one (or without git)."""
    done = _git(["rev-parse", "--show-toplevel"], cwd)
    top = os.fsdecode(done.stdout).strip() if done is not None and done.returncode == 0 else ""
    return Path(top) if top else None


def repo_prefix(folder: Path, top: Path) -> str | None:
    """`folder` relative to `top` as a glob prefix: '' at the top, 'sub/dir/' below it; None when
    it is outside."""
    relative = os.path.relpath(folder.resolve(), top.resolve())
    if relative == os.curdir:
        return ""
    if relative == os.pardir or relative.startswith(os.pardir + os.sep):
        return None
    return relative.replace(os.sep, "/") + "/"


def rooted(glob: str, prefix: str) -> str:
    """A glob written relative to the folder of `prefix` (from `repo_prefix`), relative to the
    repository root instead. The result may hold `..`, which `PathFilter` applies (and
    `PathFilter.check` refuses when it leaves the repository)."""
    if glob.startswith("!"):
        return "!" + prefix + glob[1:]
    return prefix + glob


# --- the range under test ---


class ChangeRange(NamedTuple):
    """What changed in the range under test."""

    base: str | None  # commit id the range starts from (exclusive), None when unknown
    head: str | None  # commit id it ends at
    files: frozenset[str] | None  # repository-relative changed paths; None: cannot be known
    source: str  # for the user: "pushed range 1a2b3c4..5d6e7f8", "push 1a2b3c4..5d6e7f8", ...
    problem: str | None  # why files is None, one line


def change_range(
    env: Mapping[str, str], changed_since: str | None, cwd: Path | None = None
) -> ChangeRange | None:
    """The files changed in the range under test, or None when no path filter applies (a plain
    local run, and GitHub events that are not a push or a pull request: schedule,
    workflow_dispatch, ...). An explicit `changed_since` wins over what the environment says."""
    if changed_since is not None:
        return _since(changed_since, cwd)
    if env.get("CI_ORCHESTRATOR_TRIGGER") == "pre-push":
        pushed = env.get("CI_ORCHESTRATOR_FROM_REF", ""), env.get("CI_ORCHESTRATOR_TO_REF", "")
        return _pushed(*pushed, cwd)
    if env.get("GITHUB_ACTIONS") == "true":
        payload = read_event(env)
        event = env.get("GITHUB_EVENT_NAME", "")
        if event in ("pull_request", "pull_request_target") and payload:
            return _pull_request(payload, cwd)
        if event == "push" and payload:
            return _push(payload, cwd)
    return None


def _since(ref: str, cwd: Path | None) -> ChangeRange:
    """merge-base(REF, HEAD)..HEAD, plus the working tree's changes: staged, unstaged, and
    untracked files that are not ignored (the user is testing the working tree)."""
    source = f"--changed-since {ref}"
    top = toplevel(cwd)
    if top is None:
        return ChangeRange(None, None, None, source, "not inside a git work tree")
    head = commit_id(top, "HEAD")
    base = commit_id(top, ref)
    if head is None or base is None:
        what = "HEAD" if head is None else repr(ref)
        return ChangeRange(base, head, None, source, f"{what} is not a commit in this repository")
    fork = _merge_base(top, base, head)
    if fork is None:
        return ChangeRange(None, head, None, source, f"{ref} and HEAD have no common ancestor")
    source = f"--changed-since {ref} ({fork[:7]}), plus uncommitted changes"
    committed = _names(top, [*_DIFF, fork, "--"])
    untracked = _names(top, [*_UNTRACKED])
    if committed is None or untracked is None:
        return ChangeRange(fork, head, None, source, "git diff failed")
    return ChangeRange(fork, head, committed | untracked, source, None)


def _pushed(from_ref: str, to_ref: str, cwd: Path | None) -> ChangeRange:
    """The pre-push hook's range; a new branch (no FROM) from its fork point with the default
    branch."""
    top = toplevel(cwd)
    if top is None:
        return ChangeRange(None, None, None, "pushed range", "not inside a git work tree")
    if not to_ref:
        return ChangeRange(None, None, None, "pushed range", "the hook did not say what it pushes")
    if from_ref:
        return _between(top, from_ref, to_ref, f"pushed range {from_ref[:7]}..{to_ref[:7]}")
    for ref in _DEFAULT_REFS:
        fork = _fork_point(top, ref, to_ref)
        if fork is not None:
            name = ref.removeprefix("refs/remotes/").removeprefix("refs/heads/")
            source = f"pushed range {fork[:7]}..{to_ref[:7]} (a new branch, from {name})"
            return _between(top, fork, to_ref, source)
    problem = "a new branch with no fork point: no origin/HEAD, main or master to compare it with"
    return ChangeRange(None, to_ref, None, f"pushed range ?..{to_ref[:7]}", problem)


def _pull_request(payload: Mapping[str, Any], cwd: Path | None) -> ChangeRange:
    pull = payload.get("pull_request")
    pull = pull if isinstance(pull, dict) else {}
    number = pull.get("number", payload.get("number"))
    base, head = _sha(pull.get("base")), _sha(pull.get("head"))
    label = f"pull request #{number}" if isinstance(number, int) else "pull request"
    top = toplevel(cwd)
    if top is None or base is None or head is None:
        why = "not inside a git work tree" if top is None else "the event names no base and head"
        return ChangeRange(None, head, None, label, why)
    fork, problem = _present(top, base, head, merge_base=True)
    if fork is None:
        return ChangeRange(None, head, None, label, problem)
    return _between(top, fork, head, f"{label}: merge base {fork[:7]}..{head[:7]}")


def _push(payload: Mapping[str, Any], cwd: Path | None) -> ChangeRange:
    before, after = payload.get("before"), payload.get("after")
    before = before if isinstance(before, str) and before.strip("0") else None
    after = after if isinstance(after, str) and after.strip("0") else None
    top = toplevel(cwd)
    if top is None or after is None:
        why = "not inside a git work tree" if top is None else "the push deleted the ref"
        return ChangeRange(before, after, None, "push", why)
    if before is not None:
        return _between(top, before, after, f"push {before[:7]}..{after[:7]}")
    repository = payload.get("repository")
    default = repository.get("default_branch") if isinstance(repository, dict) else None
    fork = _fork_point(top, f"refs/remotes/origin/{default}", after) if default else None
    if fork is None:
        problem = (
            f"a new branch, and no fork point with origin/{default} in this clone"
            if default
            else "a new branch, and the event names no default branch"
        )
        return ChangeRange(None, after, None, f"push ?..{after[:7]}", problem)
    source = f"push {fork[:7]}..{after[:7]} (a new branch, from origin/{default})"
    return _between(top, fork, after, source)


def _sha(side: object) -> str | None:
    sha = side.get("sha") if isinstance(side, dict) else None
    return sha if isinstance(sha, str) and sha else None


def _fork_point(top: Path, ref: str, head: str) -> str | None:
    """Where `head` left `ref`; None when `ref` is missing, or when `head` is on it (a first
    push of the default branch itself has no fork point to compare with)."""
    tip = commit_id(top, ref)
    fork = _merge_base(top, tip, head) if tip is not None else None
    return None if fork is None or fork == commit_id(top, head) else fork


def _between(top: Path, base: str, head: str, source: str) -> ChangeRange:
    """The files that differ between the trees of two commits."""
    _, problem = _present(top, base, head, merge_base=False)
    files = None if problem else _names(top, [*_DIFF, base, head, "--"])
    if files is None:
        return ChangeRange(base, head, None, source, problem or "git diff failed")
    return ChangeRange(base, head, files, source, None)


def _present(top: Path, base: str, head: str, *, merge_base: bool) -> tuple[str | None, str | None]:
    """Make sure both commits (and, for `merge_base`, enough history to find theirs) are here,
    fetching from origin once when they are not. (base or their merge base, None) or (None,
    why not)."""

    def attempt() -> str | None:
        if _missing(top, (base, head)):
            return None
        return _merge_base(top, base, head) if merge_base else base

    found = attempt()
    if found is not None:
        return found, None
    missing = _missing(top, (base, head))
    shallow = _git(["rev-parse", "--is-shallow-repository"], top)
    is_shallow = shallow is not None and shallow.stdout.strip() == b"true"
    if not missing and not is_shallow:
        return None, f"{base[:7]} and {head[:7]} have no common ancestor"
    # Deepening a shallow clone fetches both ends (a merge base needs the history of both);
    # a full clone only fetches what it lacks, and never with --depth (that would make it
    # shallow).
    wanted = [base, head] if merge_base and is_shallow else missing
    depth = MERGE_BASE_DEPTH if merge_base else 1
    why = _fetch(top, wanted, depth if is_shallow else None)
    found = None if why else attempt()
    if found is not None:
        return found, None
    still = _missing(top, (base, head))
    if still:
        cause = why or "it is still missing after fetching"
        return None, f"commit {still[0][:7]} is not in this clone (a shallow checkout?): {cause}"
    return None, (
        f"no merge base of {base[:7]} and {head[:7]} within {MERGE_BASE_DEPTH} commits of this"
        " shallow clone (`fetch-depth: 0` in actions/checkout fetches all history)"
    )


def _fetch(top: Path, shas: Sequence[str], depth: int | None) -> str | None:
    """One bounded, non-interactive fetch of `shas` from origin; why it failed, or None."""
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}
    env.setdefault("GIT_SSH_COMMAND", "ssh -o BatchMode=yes")
    args = ["fetch", "--quiet", "--no-tags", "--no-recurse-submodules", "--no-write-fetch-head"]
    args += [f"--depth={depth}"] if depth is not None else []
    done = _git([*args, "origin", *shas], top, timeout=FETCH_TIMEOUT_S, env=env)
    if done is None:
        return f"fetching it from origin did not finish within {FETCH_TIMEOUT_S:.0f} s"
    if done.returncode != 0:
        lines = os.fsdecode(done.stderr).strip().splitlines()
        return f"fetching it from origin failed: {lines[-1] if lines else 'no reason given'}"
    return None


def _missing(top: Path, shas: Sequence[str]) -> list[str]:
    """The commits of `shas` this repository does not have (all of them when git fails)."""
    lines = "".join(f"{sha}^{{commit}}\n" for sha in shas)
    done = _git(["cat-file", "--batch-check"], top, stdin=lines)
    if done is None or done.returncode != 0:
        return list(shas)
    answers = os.fsdecode(done.stdout).splitlines()
    return [sha for sha, line in zip(shas, answers, strict=False) if line.endswith(" missing")]


def commit_id(top: Path, ref: str) -> str | None:
    """The commit `ref` names in the repository at `top`, or None when it names none."""
    done = _git(["rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}"], top)
    sha = os.fsdecode(done.stdout).strip() if done is not None and done.returncode == 0 else ""
    return sha or None


def _merge_base(top: Path, a: str, b: str) -> str | None:
    done = _git(["merge-base", a, b], top)
    sha = os.fsdecode(done.stdout).strip() if done is not None and done.returncode == 0 else ""
    return sha or None


def _names(top: Path, args: list[str]) -> frozenset[str] | None:
    """The NUL-separated paths a git command prints, or None when it fails."""
    done = _git(args, top)
    if done is None or done.returncode != 0:
        return None
    return frozenset(os.fsdecode(name) for name in done.stdout.split(b"\0") if name)


def _git(
    args: list[str],
    cwd: Path | None,
    *,
    timeout: float = GIT_TIMEOUT_S,
    env: Mapping[str, str] | None = None,
    stdin: str | None = None,
) -> subprocess.CompletedProcess[bytes] | None:
    """A finished git command, or None when git is missing or it timed out (and was killed)."""
    try:
        return subprocess.run(
            ["git", "--no-optional-locks", *args],
            cwd=cwd,
            input=None if stdin is None else stdin.encode(),
            stdin=subprocess.DEVNULL if stdin is None else None,
            capture_output=True,
            timeout=timeout,
            env=env,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
