"""The terminal experience on a real pseudo-terminal: colours, live output, the running line."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

Write = Callable[[str, str], Path]


def run_in_pty(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    """Run the CLI with its stdout on a pseudo-terminal; return the exit code and the screen."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "ci_orchestrator", *args],
        stdout=follower, stderr=follower, stdin=subprocess.DEVNULL,
        env={**{k: v for k, v in os.environ.items() if k != "NO_COLOR"}, **(env or {})},
    )  # fmt: skip
    os.close(follower)
    chunks = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 0.1)
        if ready:
            try:
                data = os.read(leader, 65536)
            except OSError:  # the other side closed
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    os.close(leader)
    return proc.wait(timeout=10), b"".join(chunks).decode(errors="replace")


def test_a_tty_gets_colours_and_the_running_line(write: Write, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    write(
        "p.yml",
        f"""
        steps:
          a: {{run: 'echo from-a; while [ ! -e {gate} ]; do sleep 0.01; done'}}
          b: {{run: 'sleep 0.3; echo from-b; touch {gate}'}}
        """,
    )
    code, screen = run_in_pty("run", "p.yml", "-j", "2", "--no-journal")
    assert code == 0, screen
    assert "\033[42mPassed" in screen  # colour on a terminal
    assert "running: a, b" in screen or "running: b, a" in screen
    assert "from-a" in screen
    assert "from-b" in screen


def test_no_color_turns_colours_off_even_on_a_tty(write: Write) -> None:
    write("p.yml", "steps:\n  a: {run: 'echo hi'}\n")
    code, screen = run_in_pty("run", "p.yml", "--no-journal", env={"NO_COLOR": "1"})
    assert code == 0
    assert "\033[4" not in screen
    assert "Passed" in screen


def test_one_step_streams_its_output_live(write: Write, tmp_path: Path) -> None:
    """The step waits until its first line is on the screen: only a live stream lets it end."""
    seen = tmp_path / "seen"
    write(
        "p.yml",
        f"steps:\n  a: {{run: 'echo first-line; while [ ! -e {seen} ]; do sleep 0.01; done; echo done'}}\n",
    )
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "ci_orchestrator", "run", "p.yml", "--no-journal"],
        stdout=follower, stderr=follower, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    os.close(follower)
    screen = b""
    deadline = time.monotonic() + 30
    while b"first-line" not in screen and time.monotonic() < deadline:
        if select.select([leader], [], [], 0.1)[0]:
            screen += os.read(leader, 65536)
    seen.touch()  # the line arrived while the step was still running
    assert proc.wait(timeout=30) == 0
    os.close(leader)
    assert b"first-line" in screen
