"""`report` over a journal of several pipelines: one section each, worst first (issue 11).

Every run is a real `ci-orchestrator run` into one real SQLite journal; every report is the real CLI.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ci_orchestrator.render.markdown import render_markdown_all
from ci_orchestrator.reporting import ReportOptions, build_reports, open_store
from tests.conftest import cli

# `test` fails on the runs listed in the file fail-on (counting them in the file count).
WEB = """
version: 1
name: web
steps:
  build: {run: "true"}
  test:
    needs: [build]
    run: |
      n=$(( $(cat count 2>/dev/null || echo 0) + 1 )); echo "$n" > count
      case " $(cat fail-on) " in *" $n "*) echo "assertion failed" >&2; exit 1 ;; esac
"""
API = """
version: 1
name: api
steps:
  test: {run: "true"}
"""


def host_env() -> dict[str, str]:
    """The environment without the host's CI variables: module fixtures run before the
    per-test isolation of conftest."""
    prefixes = ("GITHUB_", "CI_ORCHESTRATOR_", "RUNNER_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    return {k: v for k, v in env.items() if k not in ("CI", "SKIP")}


def record_runs(folder: Path, web_fails_on: str) -> Path:
    """Four runs of each pipeline into one journal, api always passing, web failing on the runs
    listed."""
    journal = folder / "journal.db"
    (folder / "web.yml").write_text(WEB)
    (folder / "api.yml").write_text(API)
    (folder / "fail-on").write_text(web_fails_on)
    for _ in range(4):
        for name in ("api", "web"):
            command = [sys.executable, "-m", "ci_orchestrator", "run", f"{name}.yml", "-q"]
            subprocess.run(
                [*command, "--journal", str(journal)],
                cwd=folder, env=host_env(), capture_output=True, timeout=120, check=False,
            )  # fmt: skip
    return journal


@pytest.fixture(scope="module")
def latest_fails(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """web fails a quarter of the time, its latest run included."""
    return record_runs(tmp_path_factory.mktemp("latest-fails"), "4")


@pytest.fixture(scope="module")
def latest_passes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """web fails a quarter of the time, but its latest run passed."""
    return record_runs(tmp_path_factory.mktemp("latest-passes"), "1")


def report(journal: Path, *args: str) -> str:
    done = cli("report", "--journal", str(journal), *args)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_text_has_both_pipelines_the_failing_one_first(latest_fails: Path) -> None:
    text = report(latest_fails)
    headline, *_ = text.splitlines()
    assert headline == "Pipeline health: 2 pipelines, 1 failing"
    overview = text.split("\n\n")[0]
    assert re.search(r"web\s+failing\s+failed\s+75%\s+4\b", overview)
    assert re.search(r"api\s+passing\s+passed\s+100%\s+4\b", overview)
    assert text.index("\nweb health\n") < text.index("\napi health\n")


def test_markdown_has_both_sections_the_failing_one_first(latest_fails: Path) -> None:
    text = report(latest_fails, "--format", "markdown")
    headline = text.splitlines()[0]
    assert headline == "# ❌ Pipeline health: 2 pipelines, 1 failing"
    sections = re.findall(r"^## (\S+) (\w+) health: (\w+)$", text, re.M)
    assert sections == [("❌", "web", "failed"), ("✅", "api", "passed")]


def test_json_lists_every_pipeline_worst_first(latest_fails: Path) -> None:
    data = json.loads(report(latest_fails, "--format", "json"))
    assert (data["state"], data["summary"]) == ("failing", "2 pipelines, 1 failing")
    pipelines = [(p["pipeline"], p["state"]) for p in data["pipelines"]]
    assert pipelines == [("web", "failing"), ("api", "passing")]
    web = data["pipelines"][0]["report"]
    assert (web["runs_considered"], web["pass_rate"], web["run"]["status"]) == (4, 0.75, "failed")


@pytest.mark.parametrize("fmt", ["text", "markdown", "json"])
def test_never_passing_overall_while_a_pipeline_fails_sometimes(
    latest_passes: Path, fmt: str
) -> None:
    """Both latest runs passed, but web failed one run in four: it comes first, and the overall
    verdict is `unstable`, not passing."""
    out = report(latest_passes, "--format", fmt)
    if fmt == "json":
        data = json.loads(out)
        assert (data["state"], data["summary"]) == ("unstable", "2 pipelines, 1 unstable")
        assert [p["pipeline"] for p in data["pipelines"]] == ["web", "api"]
        return
    headline = out.splitlines()[0]
    assert headline.endswith("Pipeline health: 2 pipelines, 1 unstable")
    assert "pass" not in headline
    assert out.index("web health") < out.index("api health")


def test_a_pipeline_or_a_run_asked_for_is_reported_alone(latest_fails: Path) -> None:
    single = json.loads(report(latest_fails, "--pipeline", "api", "--format", "json"))
    assert (single["title"], single["runs_considered"]) == ("api health", 4)
    run_id = single["run"]["id"]
    by_run = json.loads(report(latest_fails, "--run-id", run_id, "--format", "json"))
    assert (by_run["title"], by_run["run"]["id"]) == ("api health", run_id)


def test_a_journal_of_one_pipeline_reports_as_before(tmp_path: Path) -> None:
    journal = tmp_path / "journal.db"
    (tmp_path / "api.yml").write_text(API)
    cli("run", "api.yml", "-q", "--journal", str(journal))
    text = report(journal)
    assert text.startswith("api health\n")
    assert "Pipeline health:" not in text


def test_junit_of_several_pipelines_is_the_latest_run(latest_fails: Path, tmp_path: Path) -> None:
    junit = tmp_path / "latest.xml"
    report(latest_fails, "--junit", str(junit))
    assert 'name="web"' in junit.read_text()  # web ran last


@pytest.mark.parametrize("budget", [600, 1500, 10**6])
def test_markdown_of_several_pipelines_fits_its_budget(latest_fails: Path, budget: int) -> None:
    """As in an issue body or a job summary: every pipeline keeps its heading, within the budget."""
    options = ReportOptions(journal=str(latest_fails))
    reports = build_reports(open_store(options.journal, {}), options, {})
    text = render_markdown_all(reports, budget=budget)
    assert len(text.encode()) <= budget
    headings = re.findall(r"^## \S+ (\w+) health", text, re.M)
    assert headings == ["web", "api"]
