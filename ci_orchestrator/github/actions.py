"""Talking to the GitHub Actions runner: workflow commands, step outputs, the job summary, masks.

Only files and stdout: nothing here touches the network. See GitHub's "Workflow commands for
GitHub Actions" for the formats.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

SUMMARY_LIMIT = 1024 * 1024  # GitHub refuses a step summary above 1 MiB
ANNOTATIONS_PER_STEP = 10  # GitHub shows at most 10 error annotations per step
_ADD_MASK = re.compile(rb"::add-mask::(.*?)\r?$", re.MULTILINE)
# Environment variables whose values are secrets whatever their content.
SECRET_ENV = ("GITHUB_TOKEN", "INPUT_GITHUB-TOKEN", "INPUT_GITHUB_TOKEN", "ACTIONS_RUNTIME_TOKEN")


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


class Masker:
    """Replaces secrets with `***` in everything we write: the token, and every value a step
    registered with `::add-mask::` (as GitHub does for the log it shows)."""

    def __init__(self, secrets_: Iterable[str] = ()) -> None:
        self.values: set[str] = set()
        for value in secrets_:
            self.add(value)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Masker:
        return cls(env.get(name, "") for name in SECRET_ENV)

    def add(self, value: str) -> None:
        value = value.strip()
        if len(value) >= 3:  # GitHub ignores tiny masks too: they would blank out normal text
            self.values.add(value)

    def scan(self, output: bytes) -> None:
        """Learn the values a step's output registered with `::add-mask::`."""
        if b"::add-mask::" in output:
            for match in _ADD_MASK.finditer(output):
                self.add(match.group(1).decode("utf-8", errors="replace"))

    def __call__(self, text: str) -> str:
        for value in sorted(self.values, key=len, reverse=True):
            if value in text:
                text = text.replace(value, "***")
        return text

    def mask_bytes(self, data: bytes) -> bytes:
        for value in sorted(self.values, key=len, reverse=True):
            raw = value.encode()
            if raw in data:
                data = data.replace(raw, b"***")
        return data

    def __bool__(self) -> bool:
        return bool(self.values)


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


class MaskedStream:
    """A step's output, masked line by line before it reaches the log file and the terminal.

    Whole lines, so that a secret split between two reads is still found; a line longer than
    `limit` is passed on in pieces rather than held in memory.
    """

    def __init__(
        self, masker: Masker, sinks: Iterable[Callable[[bytes], object]], limit: int = 1 << 16
    ):
        self.masker = masker
        self.sinks = list(sinks)
        self.limit = limit
        self.pending = b""

    def write(self, chunk: bytes) -> int:
        data = self.pending + chunk
        cut = data.rfind(b"\n") + 1
        if cut == 0 and len(data) < self.limit:
            self.pending = data
            return len(chunk)
        cut = cut or len(data)
        self.pending = data[cut:]
        self._emit(data[:cut])
        return len(chunk)

    def close(self) -> None:
        """Pass on what is left (a last line without a newline)."""
        if self.pending:
            self._emit(self.pending)
            self.pending = b""

    def _emit(self, data: bytes) -> None:
        self.masker.scan(data)
        data = self.masker.mask_bytes(data)
        for sink in self.sinks:
            sink(data)
