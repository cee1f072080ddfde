"""No secret leaves the runner: a token, an `::add-mask::` value and a secret-named variable,
printed by a failing step, written into a failing test's name and message, and typed into a
step's command, appear nowhere we write (journal, JUnit, export, logs, terminal, summary, the
comment the GitHub API server receives), raw or Markdown-escaped; the runner hears the
`::add-mask::` with the real value."""

from __future__ import annotations

import html
import json
import re
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from ci_orchestrator.journal import WorkflowJournal
from ci_orchestrator.masking import MaskedStream, Masker, add_mask_value, mask_record
from ci_orchestrator.records import StepRecord, TestCaseRecord
from ci_orchestrator.render.markdown import md
from ci_orchestrator.runner import WorkflowRunner
from tests.conftest import cli
from tests.github_server import (
    USER_TOKEN,
    FakeGitHub,
    github_fixture,  # noqa: F401 (the `github` fixture)
)

Write = Callable[[str, str], Path]
ADD_MASKED = "add_mask_s3cr3t_val"  # registered by a step; `_` is what Markdown escapes
PASSWORD = "pw_Z9x8y7w6v5"  # in a secret-named variable, DEPLOY_PASSWORD
SECRETS = (USER_TOKEN, ADD_MASKED, PASSWORD)

PIPELINE = f"""
name: shop
steps:
  register:
    run: echo "::add-mask::{ADD_MASKED}"
  test:
    needs: [register]
    junit: reports/junit.xml
    run: |
      mkdir -p reports
      cat > reports/junit.xml <<EOF
      <testsuite name="pytest" tests="2" failures="1">
        <testcase classname="tests.test_login" name="test_login[$GITHUB_TOKEN]" time="0.1">
          <failure message="expected $DEPLOY_PASSWORD" type="AssertionError">body {ADD_MASKED}</failure>
          <system-out>out $GITHUB_TOKEN</system-out>
        </testcase>
        <testcase classname="tests.test_login" name="test_ok" time="0.1"/>
      </testsuite>
      EOF
      echo "log: $GITHUB_TOKEN $DEPLOY_PASSWORD {ADD_MASKED} inline {PASSWORD}"
      exit 1
"""


def forms(secret: str) -> list[str]:
    """A secret as it would appear raw, Markdown-escaped or HTML-escaped."""
    return [secret, md(secret), html.escape(secret)]


def leaks(text: str) -> list[str]:
    return [form for secret in SECRETS for form in forms(secret) if form in text]


def test_no_secret_reaches_any_output(
    write: Write, tmp_path: Path, github: FakeGitHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    write("pipeline.yml", PIPELINE)
    event = tmp_path / "event.json"
    payload = {"number": 42, "pull_request": {"number": 42}, "repository": {"private": True}}
    event.write_text(json.dumps(payload))
    github.add_pull_request(42)
    summary = tmp_path / "summary.md"
    env = {
        "GITHUB_ACTIONS": "true",
        "GITHUB_STEP_SUMMARY": str(summary),
        "GITHUB_OUTPUT": str(tmp_path / "outputs"),
        "GITHUB_EVENT_NAME": "pull_request",
        "GITHUB_EVENT_PATH": str(event),
        "DEPLOY_PASSWORD": PASSWORD,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    ran = cli("run", "pipeline.yml", "--junit", "junit.xml")
    assert ran.returncode == 1, ran.stderr
    exported = cli("journal", "export")
    commented = cli("comment", "--logs", "on")
    assert commented.returncode == 0, commented.stderr
    [comment] = github.comments[42]

    # The runner-facing stdout carries the real value once, in the command the runner reads.
    # (The log replayed in the step's ::group:: says `::add-mask::***`: nothing to leak.)
    masks = re.findall(r"^::add-mask::.*$", ran.stdout, re.M)
    assert masks[0] == f"::add-mask::{ADD_MASKED}"
    assert set(masks[1:]) <= {"::add-mask::***"}
    terminal = ran.stdout.replace(f"::add-mask::{ADD_MASKED}\n", "", 1)
    db = sqlite3.connect(".ci-orchestrator/journal.db")
    outputs = {
        "terminal": terminal + ran.stderr,
        "journal.db": "\n".join(db.iterdump()),
        "junit": Path("junit.xml").read_text(),
        "journal export": exported.stdout,
        "logs": "".join(p.read_text() for p in Path(".ci-orchestrator/runs").rglob("*.*")),
        "summary": summary.read_text(),
        "comment": comment["body"],
    }
    for where, text in outputs.items():
        assert leaks(text) == [], where
    # What was masked is still there to read, as ***.
    assert "log: *** *** *** inline ***" in outputs["logs"]
    assert "test_login[***]" in outputs["junit"]
    assert "expected ***" in outputs["journal.db"]
    assert "test_login[***]" in outputs["comment"]  # a code span: as it is
    assert "log: *** *** *** inline ***" in outputs["comment"]  # the log tail, fenced


def test_attempt_errors_and_test_records_are_masked_before_the_journal(tmp_path: Path) -> None:
    def deploy() -> None:
        raise RuntimeError(f"login failed for {PASSWORD}")

    journal = WorkflowJournal(tmp_path / "journal.db")
    runner = WorkflowRunner("lib", observers=[journal], state_dir=tmp_path, mask=Masker([PASSWORD]))
    runner.add_step("deploy", deploy)
    journal.mask = Masker([PASSWORD])
    run_id = runner.run().workflow_id
    [step] = journal.store.load_run(run_id).steps  # type: ignore[union-attr]
    assert step.attempts[0].error == "RuntimeError('login failed for ***')"
    journal.close()
    dump = "\n".join(sqlite3.connect(tmp_path / "journal.db").iterdump())
    assert PASSWORD not in dump


def test_mask_record_reaches_every_text_of_a_record() -> None:
    case = TestCaseRecord("suite", f"c.{PASSWORD}", f"t[{PASSWORD}]", "failed", 1.0, PASSWORD)
    step = StepRecord("test", "failed", reason=PASSWORD, command=f"x {PASSWORD}", tests=(case,))
    masked = mask_record(step, Masker([PASSWORD]))
    assert PASSWORD not in repr(masked)
    assert masked.tests[0].name == "t[***]"
    assert masked.duration_ms == step.duration_ms


# --- what counts as a secret, and odd values ---


def test_secret_named_variables_and_the_explicit_list_are_masked() -> None:
    env = {
        "DEPLOY_PASSWORD": "hunter22",
        "NPM_TOKEN": "npm_abcdef",
        "SIGNING_KEY": "k3y-material",
        "DB_CREDENTIALS": "user:pass-word",
        "PRIVATE_NOTE": "private-thing",
        "API_SECRET": "s3cret-value",
        "MY_PASSWD": "passwd-value",
        "OPAQUE": "listed-value",
        "CI_ORCHESTRATOR_MASK_ENV": "OPAQUE",
        "TOKENIZERS_PARALLELISM": "true",  # a setting, not a secret
        "HOME": "/root",
    }
    masker = Masker.from_env(env)
    text = " ".join(env.values())
    masked = masker(text)
    for name, value in env.items():
        if name not in ("TOKENIZERS_PARALLELISM", "HOME", "CI_ORCHESTRATOR_MASK_ENV"):
            assert value not in masked, name
    assert "true" in masked
    assert "/root" in masked


def test_short_values_are_not_masked_and_said_so() -> None:
    masker = Masker.from_env({"API_TOKEN": "abc"})
    assert masker("abc def") == "abc def"
    [warning] = masker.warnings()
    assert "$API_TOKEN" in warning
    assert "shorter than 4 characters" in warning


def test_a_secret_inside_ordinary_words_a_multiline_one_and_regex_characters() -> None:
    masker = Masker(["pass", "first-line\nsecond-line", "a.b*c+(d)"])
    assert masker("password") == "***word"
    assert masker("first-line then second-line") == "*** then ***"
    assert masker("a.b*c+(d) but not axbbc+d") == "*** but not axbbc+d"


@pytest.mark.parametrize(
    ("line", "value"),
    [
        (b"::add-mask::plain", "plain"),
        (b"   ::add-mask::indented", "indented"),
        (b"::add-mask::50%25 a%0Ab%0Dc\r", "50% a\nb\rc"),
        (b"echo ::add-mask::not-a-command", None),
        (b"::add-mask::", ""),
    ],
)
def test_add_mask_is_parsed_as_the_runner_parses_it(line: bytes, value: str | None) -> None:
    assert add_mask_value(line) == value


def test_an_empty_add_mask_is_a_warning_not_an_error(write: Write) -> None:
    write(
        "pipeline.yml",
        """
        name: odd
        steps:
          masks:
            run: |
              echo "::add-mask::"
              echo "::add-mask::ab"
              echo done
        """,
    )
    ran = cli("run", "pipeline.yml", GITHUB_ACTIONS="true")
    assert ran.returncode == 0
    assert "Traceback" not in ran.stderr
    assert "shorter than 4 characters" in ran.stderr


def test_masking_never_changes_a_step_exit_code(write: Write) -> None:
    write(
        "pipeline.yml",
        """
        name: codes
        steps:
          fails:
            run: echo "$API_TOKEN"; exit 3
        """,
    )
    ran = cli("run", "pipeline.yml", "--keep-going", API_TOKEN="tok-abcdef")
    assert ran.returncode == 1
    assert "exit code 3" in ran.stdout
    assert "tok-abcdef" not in ran.stdout


def test_masked_stream_tells_the_runner_before_the_line_goes_on() -> None:
    heard: list[str] = []
    seen: list[bytes] = []
    stream = MaskedStream(Masker(), [seen.append], on_mask=heard.append)
    stream.write(b"::add-mask::late_secret\nlate_secret\n")
    stream.close()
    assert heard == ["late_secret"]
    assert b"late_secret" not in b"".join(seen)
