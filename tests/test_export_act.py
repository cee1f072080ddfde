"""An exported workflow under a real runner: nektos/act in host mode (tests/act.py), offline.

Two pipelines, exported with `ci-orchestrator export github-workflow` and run as they are, three
act runs at once, each next to a local `ci-orchestrator run --keep-going` of the same pipeline
(one job per step is `--keep-going`: a failure stops only the jobs that need it):

- examples/demo.yml: a value crosses jobs ($CIO_SETUP_VERSION reaches `package` two jobs later),
  a flaky step passes on its retry inside its job, and `publish` is skipped by its condition.
- a Python project (tests/fixtures/export): `setup:` installs it with its test tools, `build`
  makes the wheel (`artifacts: dist/*.whl`) and hands on its id, `test` installs that wheel and
  runs pytest with JUnit, `notify` runs when something failed and `deploy` has no command (so no
  job). Once passing, once with a bug that fails a test.

Offline, how each job gets Python and ci-orchestrator. actions/setup-python finds its Python in the
tool cache ($AGENT_TOOLSDIRECTORY): a virtual environment of the interpreter running the tests (so
the wheelhouse fits), made for each act run and laid out as setup-python expects. The jobs of a run
share it as jobs share a self-hosted machine; none of them touches the tests' Python. In the
project, the jobs that install run one after another; in the demo, only the first job installs and
the others find that same version installed. Each job installs ci-orchestrator with `--install
WHEEL`: a wheel built once from the copy of this checkout that tests/act.py serves as the action;
its dependencies, hatchling and pytest come from wheelhouses (PIP_FIND_LINKS, PIP_NO_INDEX).

act gives each job its own workspace; artifacts cross through the upload/download-artifact
stand-ins (tests/fixtures/workflows/stand-ins). The merged journal is the one the last job saved
to act's cache server (actions/cache/save), read back from it.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import tarfile
import textwrap
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ci_orchestrator.github.export import MERGED_JOURNAL
from ci_orchestrator.journal import JournalStore
from ci_orchestrator.records import RunRecord
from tests.act import (
    ROOT,
    ActResult,
    ActSetup,
    act_fixture,  # noqa: F401 (the `act` fixture)
    download_wheels,
    run_workflow,
)
from tests.conftest import cli
from tests.test_action import load_yaml

FIXTURES = Path(__file__).parent / "fixtures" / "export"
PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"
WHEELS = ["pytest", "editables", "pip"]  # the project's test tools and editable install; pip
SHOP = {
    ".ci-orchestrator.yml": (FIXTURES / "shop.yml").read_text(),
    "pyproject.toml": (FIXTURES / "pyproject.toml").read_text(),
    "src/shop/__init__.py": textwrap.dedent(
        '''\
        """Prices, summed."""

        from shop._build import BUILD_ID

        __all__ = ["BUILD_ID", "total"]


        def total(prices: list[int]) -> int:
            return sum(prices)
        '''
    ),
    "src/shop/_build.py": 'BUILD_ID = "source"  # `build` writes its own id here\n',
    # Not test_*.py: this suite must not collect it.
    "tests/check_shop.py": textwrap.dedent(
        """\
        import os

        import shop


        def test_total() -> None:
            assert shop.total([1, 2, 3]) == 6


        def test_the_installed_wheel_is_the_one_build_made() -> None:
            assert shop.BUILD_ID == os.environ["CIO_BUILD_ID"]
            assert "site-packages" in shop.__file__
        """
    ),
}
BUG = {
    "src/shop/__init__.py": SHOP["src/shop/__init__.py"].replace("sum(prices)", "sum(prices) + 1")
}
DEMO = {"examples/demo.yml": (ROOT / "examples" / "demo.yml").read_text()}


@dataclass(frozen=True)
class Scenario:
    workflow: dict[str, Any]  # as exported
    act: ActResult
    merged: list[RunRecord]  # the runs of the journal the last job saved
    local: RunRecord  # the same pipeline, run here


@dataclass(frozen=True)
class Tools:
    """What every scenario shares: ci-orchestrator's wheel, the wheelhouses, a Python with pip."""

    wheel: Path
    find_links: str
    python: Path  # a virtual environment with pip, copied for each run


@pytest.fixture(scope="module")
def runs(
    act: ActSetup, tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config
) -> dict[str, Scenario]:
    root = tmp_path_factory.mktemp("export-act")
    tools = prepare_tools(act, root, pytestconfig)
    todo: dict[str, Callable[[], Scenario]] = {
        "demo": lambda: scenario(act, tools, root / "demo", DEMO, "examples/demo.yml"),
        "shop": lambda: scenario(act, tools, root / "shop", SHOP, ".ci-orchestrator.yml"),
        "broken": lambda: scenario(
            act, tools, root / "broken", {**SHOP, **BUG}, ".ci-orchestrator.yml"
        ),
    }
    with ThreadPoolExecutor(len(todo)) as pool:
        futures = {name: pool.submit(run) for name, run in todo.items()}
        return {name: future.result() for name, future in futures.items()}


def prepare_tools(act: ActSetup, root: Path, pytestconfig: pytest.Config) -> Tools:
    cache: pytest.Cache | None = getattr(pytestconfig, "cache", None)
    extra = download_wheels(WHEELS, cache.mkdir("act-wheels") if cache is not None else root)
    find_links = f"{act.wheelhouse} {extra}"
    offline = {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": find_links, "PIP_CONFIG_FILE": "/dev/null"}
    wheels = root / "ci-orchestrator-wheel"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    checked(*pip, "wheel", "--quiet", "--no-deps", "-w", str(wheels), str(act.action), env=offline)
    python = root / "python"
    base = getattr(sys, "_base_executable", sys.executable)
    checked(base, "-m", "venv", "--without-pip", str(python))
    pip_wheel = str(next(extra.glob("pip-*.whl")))
    checked(*pip, "--python", str(python / "bin" / "python"), "install", "--quiet", pip_wheel)
    [wheel] = wheels.glob("ci_orchestrator-*.whl")
    return Tools(wheel, f"{find_links} {wheels}", python)


def checked(*args: str, env: Mapping[str, str] | None = None, cwd: Path | None = None) -> str:
    done = subprocess.run(
        args, env={**clean_env(), **(env or {})}, cwd=cwd, capture_output=True, text=True,
        timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, f"{args}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def clean_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "VIRTUAL_ENV"))}


def scenario(
    act: ActSetup, tools: Tools, folder: Path, files: Mapping[str, str], target: str
) -> Scenario:
    tree = write_tree(folder / "tree", files)
    workflow = folder / "pipeline.yml"
    export = cli(
        "export", "github-workflow", target, "--python-version", PYTHON,
        "--install", str(tools.wheel), "-o", str(workflow), cwd=tree,
    )  # fmt: skip
    assert export.returncode == 0, export.stderr
    toolcache = folder / "toolcache"
    python = tool_cache_python(tools.python, toolcache)
    pip_env = {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": tools.find_links}
    result = run_workflow(
        act, folder / "act", workflow, files=files, cache_server=folder / "cache",
        env={"AGENT_TOOLSDIRECTORY": str(toolcache), **pip_env}, timeout=240,
    )  # fmt: skip
    merged = saved_runs(folder / "cache", folder / "merged.db")
    local = local_run(tools, folder / "local", files, target)
    assert python.exists()
    return Scenario(load_yaml(workflow), result, merged, local)


def write_tree(folder: Path, files: Mapping[str, str]) -> Path:
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    return folder


def tool_cache_python(python: Path, toolcache: Path) -> Path:
    """`python` copied where actions/setup-python looks for this version: Python/X.Y.Z/x64,
    with the `x64.complete` marker its tool cache keeps."""
    version = ".".join(map(str, sys.version_info[:3]))
    folder = toolcache / "Python" / version / "x64"
    shutil.copytree(python, folder, symlinks=True)
    (folder.parent / "x64.complete").touch()
    return folder / "bin" / "python"


def local_run(tools: Tools, folder: Path, files: Mapping[str, str], target: str) -> RunRecord:
    """`ci-orchestrator run --keep-going --setup` in a copy of the files, with a Python of its own."""
    tree = write_tree(folder / "tree", files)
    python = folder / "python"
    shutil.copytree(tools.python, python, symlinks=True)
    journal = folder / "journal.db"
    path = f"{python / 'bin'}:{clean_env()['PATH']}"
    cli(
        "run", target, "--keep-going", "--setup", "--journal", str(journal), cwd=tree, PATH=path,
        PIP_NO_INDEX="1", PIP_FIND_LINKS=tools.find_links, PIP_CONFIG_FILE="/dev/null",
    )  # fmt: skip
    run = JournalStore(journal, read_only=True).latest_run()
    assert run is not None
    return run


def saved_runs(cache_server: Path, dest: Path) -> list[RunRecord]:
    """The runs of the journal that actions/cache/save stored on act's cache server (a tar archive,
    zstd-compressed when zstd is on PATH)."""
    [entry] = [p for p in (cache_server / "cache").glob("*/*") if p.parent.name != "tmp"]
    data = entry.read_bytes()
    if data.startswith(b"\x28\xb5\x2f\xfd"):
        data = subprocess.run(["zstd", "-dc"], input=data, capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        [member] = [m for m in tar.getmembers() if m.name.endswith(MERGED_JOURNAL)]
        extracted = tar.extractfile(member)
        assert extracted is not None
        dest.write_bytes(extracted.read())
    store = JournalStore(dest, read_only=True)
    ids = [row["id"] for row in store.query("SELECT id FROM runs")]
    return [run for run in map(store.load_run, ids) if run is not None]


def outcomes(run: RunRecord) -> dict[str, tuple[str, str]]:
    """Each step's status, and the reason of a skip."""
    return {s.name: (s.status, s.reason if s.status == "skipped" else "") for s in run.steps}


def step_jobs(workflow: dict[str, Any]) -> dict[str, str]:
    """Step name -> job id."""
    return {job["name"]: job_id for job_id, job in workflow["jobs"].items() if job_id != "report"}


# --- the tests ---


@pytest.mark.parametrize("name", ["demo", "shop", "broken"])
def test_every_step_ends_as_in_a_local_run(runs: dict[str, Scenario], name: str) -> None:
    run = runs[name]
    report = run.act.job("report")
    assert report.result == "success", report.log
    assert [a for a in report.annotations if a.level != "notice"] == [], report.log
    assert [r.id for r in run.merged] == ["gh-1-1"], run.act.log[-3000:]
    [merged] = run.merged
    assert outcomes(merged) == outcomes(run.local)
    assert merged.status == run.local.status
    for step, job_id in step_jobs(run.workflow).items():
        status = outcomes(merged)[step][0]
        expected = {"completed": "success", "failed": "failure"}.get(status)
        if expected is None and job_id not in run.act.jobs:  # GitHub skipped the job
            continue
        job = run.act.job(job_id)
        assert job.result == (expected or "success"), job.log  # a step its if: skipped: success


def test_the_merged_journal_holds_one_run_with_every_step(runs: dict[str, Scenario]) -> None:
    [demo] = runs["demo"].merged
    names = ["setup", "lint", "unit-tests", "integration-tests", "package", "publish"]
    assert sorted(s.name for s in demo.steps) == sorted(names)
    [shop] = runs["shop"].merged
    assert sorted(s.name for s in shop.steps) == ["build", "deploy", "notify", "set-up", "test"]
    assert demo.step("integration-tests").flaky
    assert demo.step("publish").reason.startswith("condition not met")


def test_a_value_crosses_jobs(runs: dict[str, Scenario]) -> None:
    demo = runs["demo"].act
    assert json.loads(demo.job("setup").outputs["run"]["values"]) == {"CIO_SETUP_VERSION": "1.2.3"}
    assert "packaging version 1.2.3" in demo.job("package").log
    build = json.loads(runs["shop"].act.job("build").outputs["run"]["values"])
    assert list(build) == ["CIO_BUILD_ID"]
    # `test` checks the same id in the wheel it installed (check_shop.py), which passed:
    [shop] = runs["shop"].merged
    tests = {case.name: case.status for case in shop.step("test").tests}
    assert tests["test_the_installed_wheel_is_the_one_build_made"] == "passed"


def test_test_installs_the_wheel_build_made(runs: dict[str, Scenario]) -> None:
    shop = runs["shop"]
    archive = shop.act.artifacts / "artifacts-build" / "artifacts-build.tar"
    with tarfile.open(archive) as tar:
        assert tar.getnames() == ["dist/shop-0.1.0-py3-none-any.whl"]
    [merged] = shop.merged
    assert merged.step("test").status == "completed"


def test_the_notifier_runs_only_when_something_failed(runs: dict[str, Scenario]) -> None:
    shop, broken = runs["shop"], runs["broken"]
    assert "notify" not in shop.act.jobs  # GitHub skipped the job: failure() was false
    [merged] = shop.merged
    assert merged.step("notify").reason == "nothing it depends on failed (when: failure)"
    assert broken.act.job("test").result == "failure"
    assert broken.act.job("notify").result == "success"
    assert "shop's pipeline failed; telling the team" in broken.act.job("notify").log
    [failed] = broken.merged
    assert failed.status == "failed"
    assert {c.name: c.status for c in failed.step("test").tests}["test_total"] == "failed"


def test_a_step_without_a_command_has_no_job(runs: dict[str, Scenario]) -> None:
    shop = runs["shop"]
    assert "deploy" not in step_jobs(shop.workflow)
    assert "deploy" not in shop.act.jobs
    assert shop.workflow["jobs"]["notify"]["needs"] == ["test"]  # through deploy
    [merged] = shop.merged
    assert outcomes(merged)["deploy"] == ("skipped", "not configured")
