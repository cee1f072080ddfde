"""`ci-orchestrator run` inside GitHub Actions: groups, annotations, outputs, summary, masks."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable
from pathlib import Path

from ci_orchestrator.github.actions import MaskedStream, Masker, command, set_outputs
from tests.conftest import cli

Write = Callable[[str, str], Path]
TOKEN = "ghs_0123456789abcdefSECRET"
MASKED = "hunter2-masked-value"


def read_outputs(path: Path) -> dict[str, str]:
    """Parse $GITHUB_OUTPUT the way the runner does (heredocs with a delimiter)."""
    outputs, lines = {}, iter(path.read_text().splitlines())
    for line in lines:
        name, _, delimiter = line.partition("<<")
        value = []
        for body in lines:
            if body == delimiter:
                break
            value.append(body)
        outputs[name] = "\n".join(value)
    return outputs


def test_outputs_summary_annotations_and_masks(write: Write, tmp_path: Path) -> None:
    write(
        "pipeline.yml",
        f"""
        name: gha
        steps:
          leaky:
            run: |
              echo "::add-mask::{MASKED}"
              echo "token is $GITHUB_TOKEN and the secret is {MASKED}"
          flaky:
            run: "[ -e {tmp_path}/once ] || {{ touch {tmp_path}/once; exit 1; }}"
            retry: 2
          broken:
            run: "echo 'value {MASKED} leaked'; exit 4"
            needs: [leaky]
        """,
    )
    outputs, summary = tmp_path / "out.txt", tmp_path / "summary.md"
    done = cli(
        "run", "pipeline.yml", "--junit", "junit.xml", "--keep-going",
        GITHUB_ACTIONS="true", GITHUB_OUTPUT=str(outputs), GITHUB_STEP_SUMMARY=str(summary),
        GITHUB_TOKEN=TOKEN,
    )  # fmt: skip
    assert done.returncode == 1
    assert "::group::leaky" in done.stdout
    assert "::endgroup::" in done.stdout
    assert re.search(r"^::error title=broken failed::exit code 4", done.stdout, re.M)
    values = read_outputs(outputs)
    assert values["success"] == "false"
    assert values["failed-steps"] == "broken"
    assert values["flaky-steps"] == "flaky"
    assert values["junit-path"] == "junit.xml"
    assert values["run-id"]
    report = summary.read_text()
    assert "broken" in report
    # The runner hears the `::add-mask::` with the real value (and then masks it itself).
    assert re.findall(r"^::add-mask::.*$", done.stdout, re.M)[0] == f"::add-mask::{MASKED}"
    stdout = done.stdout.replace(f"::add-mask::{MASKED}\n", "", 1)
    everything = [stdout, done.stderr, report, Path("junit.xml").read_text()]
    everything += [p.read_text() for p in Path(".ci-orchestrator/runs").rglob("*.log")]
    db = sqlite3.connect(".ci-orchestrator/journal.db")
    everything += [str(row) for row in db.execute("SELECT * FROM steps")]
    for text in everything:
        assert TOKEN not in text
        assert MASKED not in text
    assert "token is *** and the secret is ***" in "".join(everything)


def test_outputs_use_a_delimiter_no_value_can_forge(tmp_path: Path) -> None:
    path = tmp_path / "out"
    set_outputs(
        {"failed-steps": "a\nsuccess<<EOF\ntrue\nEOF", "success": "false"},
        {"GITHUB_OUTPUT": str(path)},
    )
    assert read_outputs(path) == {"failed-steps": "a\nsuccess<<EOF\ntrue\nEOF", "success": "false"}


def test_masked_stream_finds_secrets_split_across_reads() -> None:
    masker = Masker([TOKEN])
    seen: list[bytes] = []
    stream = MaskedStream(masker, [seen.append])
    for piece in (
        b"before " + TOKEN.encode()[:5],
        TOKEN.encode()[5:] + b" after\n",
        b"::add-mask::late-secret\nlate-secret",
    ):
        stream.write(piece)
    stream.close()
    assert b"".join(seen) == b"before *** after\n::add-mask::***\n***"


def test_workflow_commands_are_escaped() -> None:
    assert (
        command("error", "50% done\nnext", title="a:b,c")
        == "::error title=a%3Ab%2Cc::50%25 done%0Anext"
    )


def test_no_more_error_annotations_than_github_shows(write: Write) -> None:
    steps = "".join(f"  s{n:02}:\n    run: exit 1\n" for n in range(12))
    write("pipeline.yml", f"name: many\nsteps:\n{steps}")
    done = cli("run", "pipeline.yml", "--keep-going", "--jobs", "1", GITHUB_ACTIONS="true")
    errors = re.findall(r"^::error title=([^:]*)::(.*)$", done.stdout, re.M)
    assert len(errors) == 10
    assert errors[-1][0] == "more failures (see the summary)"
    assert errors[-1][1].startswith("3 more steps failed: ")
    assert errors[-1][1].count(",") == 2
