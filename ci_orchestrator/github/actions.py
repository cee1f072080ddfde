"""Talking to the GitHub Actions runner: workflow commands, step outputs, the job summary.

Only files and stdout: nothing here touches the network. See GitHub's "Workflow commands for
GitHub Actions" for the formats.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from ci_orchestrator.masking import MaskedStream, Masker

__all__ = [
    "MaskedStream",
    "Masker",
    "append_summary",
    "command",
    "escape_data",
    "escape_property",
    "in_actions",
    "set_outputs",
    "summary_room",
]

SUMMARY_LIMIT = 1024 * 1024  # GitHub refuses a step summary above 1 MiB
ANNOTATIONS_PER_STEP = 10  # GitHub shows at most 10 error annotations per step


def in_actions(env: Mapping[str, str]) -> bool:
    return env.get("GITHUB_ACTIONS") == "true"


def escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def command(name: str, message: str, **properties: str | int | None) -> str:
    """`::name key=value,...::message`, escaped as the runner expects."""
    props = ",".join(f"{k}={escape_property(str(v))}" for k, v in properties.items() if v)
    return f"::{name}{' ' + props if props else ''}::{escape_data(message)}"


def set_outputs(outputs: Mapping[str, str], env: Mapping[str, str]) -> None:
    """Append outputs to `$GITHUB_OUTPUT`, each in a heredoc with a random delimiter (so no value
    can end it early and inject another output)."""
    path = env.get("GITHUB_OUTPUT")
    if not path:
        return
    with open(path, "a", encoding="utf-8") as out:
        for name, value in outputs.items():
            delimiter = f"ghadelimiter_{os.urandom(16).hex()}"
            while delimiter in value:
                delimiter = f"ghadelimiter_{os.urandom(16).hex()}"
            out.write(f"{name}<<{delimiter}{os.linesep}{value}{os.linesep}{delimiter}{os.linesep}")


def append_summary(markdown: str, env: Mapping[str, str]) -> bool:
    """Append to the job summary if there is one and the result stays within GitHub's 1 MiB."""
    path = env.get("GITHUB_STEP_SUMMARY")
    if not path:
        return False
    summary = Path(path)
    used = summary.stat().st_size if summary.exists() else 0
    data = markdown.encode()
    if used + len(data) > SUMMARY_LIMIT:
        return False
    with summary.open("ab") as out:
        out.write(data)
    return True


def summary_room(env: Mapping[str, str]) -> int:
    """Bytes left in the job summary (the file is shared by every step of the job)."""
    path = env.get("GITHUB_STEP_SUMMARY")
    used = Path(path).stat().st_size if path and Path(path).exists() else 0
    return max(0, SUMMARY_LIMIT - used)
