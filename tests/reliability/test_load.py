"""Load: many pipelines at once on one journal, and a thousand runs in a row."""

from __future__ import annotations

import itertools
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ci_orchestrator.journal import JournalStore, WorkflowJournal
from ci_orchestrator.runner import WorkflowRunner
from tests.conftest import cli

RUNNER = textwrap.dedent(
    """
    import sys
    from ci_orchestrator.journal import WorkflowJournal
    from ci_orchestrator.runner import WorkflowRunner

    journal = WorkflowJournal(sys.argv[1])
    for i in range(int(sys.argv[3])):
        runner = WorkflowRunner(sys.argv[2], jobs=2, observers=[journal], state_dir=sys.argv[4])
        runner.add_step("a", "true")
        runner.add_step("b", lambda: i)
        runner.add_step("c", "true", ["a", "b"])
        assert runner.run().success
    """
)


@pytest.mark.slow
def test_five_pipelines_at_once_lose_nothing(tmp_path: Path) -> None:
    script = tmp_path / "many.py"
    script.write_text(RUNNER)
    journal = tmp_path / "journal.db"
    procs = [
        subprocess.Popen([sys.executable, str(script), str(journal), f"p{n}", "40", str(tmp_path)])
        for n in range(5)
    ]
    assert [p.wait(timeout=300) for p in procs] == [0] * 5
    store = JournalStore(journal)
    per_pipeline = store.query(
        "SELECT pipeline, count(*) FROM runs WHERE status = 'passed' GROUP BY 1"
    )
    assert sorted(tuple(r) for r in per_pipeline) == [(f"p{n}", 40) for n in range(5)]
    assert store.query("SELECT count(*) FROM steps WHERE status = 'completed'")[0][0] == 600
    assert store.query("SELECT count(*) FROM attempts")[0][0] == 600


def _size(journal: WorkflowJournal) -> int:
    """The database's size in bytes as SQLite sees it (WAL frames included)."""
    pages = journal.store.query("PRAGMA page_count")[0][0]
    return int(pages * journal.store.query("PRAGMA page_size")[0][0])


@pytest.mark.slow
def test_a_thousand_runs_in_a_row_grow_the_journal_linearly(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    journal = WorkflowJournal(path)
    sizes = []
    for _batch in range(4):
        for i in range(250):
            runner = WorkflowRunner("load", observers=[journal], state_dir=tmp_path)
            runner.add_step("build", lambda: None)
            runner.add_step("test", lambda n=i: n, ["build"])
            runner.add_step("flaky", lambda: None, ["build"])
            assert runner.run().success
        sizes.append(_size(journal))
    growth = [b - a for a, b in itertools.pairwise(sizes)]
    assert all(0.6 * growth[0] <= g <= 1.5 * growth[0] for g in growth), sizes
    store = journal.store
    assert store.query("SELECT count(*) FROM runs")[0][0] == 1000
    assert store.query("SELECT count(*) FROM steps")[0][0] == 3000
    assert journal.entry_count == 1000 * 2 + 3000
    report = cli("report", "--journal", str(path), "--format", "json")
    assert report.returncode == 0
    assert '"runs_considered": 1000' in report.stdout
