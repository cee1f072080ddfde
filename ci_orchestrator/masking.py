"""Secrets out of everything we write: one `Masker` per run, applied to raw text where it is read.

What is masked: the token variables, every environment variable whose name looks secret
(`*TOKEN*`, `*SECRET*`, `*PASSWORD*`, `*PASSWD*`, `*_KEY`, `*CREDENTIAL*`, `*PRIVATE*`), the
variables named in `CI_ORCHESTRATOR_MASK_ENV` (comma-separated; `--mask-env NAME`, the action's
`mask-env` input), and every value a step registers with `::add-mask::`. Values shorter than 4
characters are not masked (they would blank out ordinary text; the runner does the same) and are
reported as such; so are values that are plainly not secrets (`true`, `1`, ...).

Masking happens on raw text, before any escaping or rendering: a step's output line by line
(`MaskedStream`, before the log file and the terminal), and every text field of the records that
reach the journal, JUnit, the summary and the comment (`mask_record`). Renderers then escape text
that no longer holds a secret; masking Markdown after escaping would miss `ghs\\_abc`.

`::add-mask::` is parsed as the runner parses it (at the start of a line after whitespace; `%25`,
`%0D`, `%0A` unescaped), and in GitHub Actions the command is passed on to the runner with the real
value at the moment it is seen, so that the runner masks it in later steps and job outputs too.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

MIN_SECRET_LENGTH = 4
MASK = "***"
MASK_ENV = "CI_ORCHESTRATOR_MASK_ENV"  # extra variable names to mask, comma-separated
# Variables whose values are secrets whatever their names say.
TOKEN_ENV = ("GITHUB_TOKEN", "INPUT_GITHUB-TOKEN", "INPUT_GITHUB_TOKEN", "ACTIONS_RUNTIME_TOKEN")
_SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD|_KEY$|CREDENTIAL|PRIVATE", re.IGNORECASE)
# Values of secret-looking variables that are settings, not secrets (TOKENIZERS_PARALLELISM=true).
_NOT_SECRET = re.compile(r"(?i:true|false|yes|no|on|off|none|null|[0-9]{1,6})")
_ADD_MASK = b"::add-mask::"
_UNESCAPE = {"%25": "%", "%0D": "\r", "%0A": "\n"}
_ESCAPED = re.compile("%25|%0D|%0A", re.IGNORECASE)
T = TypeVar("T")


def secret_names(env: Mapping[str, str]) -> list[str]:
    """The variables of `env` whose names look secret (and the token variables)."""
    return sorted(
        name
        for name in env
        if name in TOKEN_ENV or (_SECRET_NAME.search(name) and name != MASK_ENV)
    )


def listed_names(env: Mapping[str, str]) -> list[str]:
    """The variables named in `CI_ORCHESTRATOR_MASK_ENV` (masked whatever their values)."""
    return [name.strip() for name in env.get(MASK_ENV, "").split(",") if name.strip()]


class Masker:
    """Replaces secrets with `***` (longest first, so a secret inside another goes too)."""

    def __init__(self, secrets_: Iterable[str] = ()) -> None:
        self.values: set[str] = set()
        self.too_short: list[str] = []  # where a value too short to mask came from
        self._ordered: list[str] = []
        for value in secrets_:
            self.add(value)

    @classmethod
    def from_env(cls, env: Mapping[str, str], names: Iterable[str] = ()) -> Masker:
        """The secrets of an environment (see the module docstring), plus the variables `names`."""
        masker = cls()
        listed = {*TOKEN_ENV, *listed_names(env), *names}
        for name in sorted({*secret_names(env), *listed}):
            value = env.get(name, "")
            if name in listed or not _NOT_SECRET.fullmatch(value.strip()):
                masker.add(value, source=f"${name}")
        return masker

    def add(self, value: str, source: str = "a secret") -> bool:
        """Mask `value` (and each line of a multi-line value); False when it is too short."""
        value = value.strip()
        if not value:
            return False
        if len(value) < MIN_SECRET_LENGTH:
            self.too_short.append(source)
            return False
        lines = [line.strip() for line in value.splitlines()]
        for part in (value, *lines):
            if len(part) >= MIN_SECRET_LENGTH and part not in self.values:
                self.values.add(part)
        self._ordered = sorted(self.values, key=len, reverse=True)
        return True

    def scan(self, output: bytes) -> list[str]:
        """Learn the values that `::add-mask::` lines of `output` register; returns them."""
        if _ADD_MASK not in output:
            return []
        found = []
        for line in output.splitlines():
            value = add_mask_value(line)
            if value is None:
                continue
            if not value.strip():
                self.too_short.append("an empty ::add-mask:: value")
            elif self.add(value, source="an ::add-mask:: value"):
                found.append(value)
        return found

    def __call__(self, text: str) -> str:
        for value in self._ordered:
            if value in text:
                text = text.replace(value, MASK)
        return text

    def mask_bytes(self, data: bytes) -> bytes:
        for value in self._ordered:
            raw = value.encode()
            if raw in data:
                data = data.replace(raw, MASK.encode())
        return data

    def warnings(self) -> list[str]:
        """One line about the values left unmasked for being too short, if any."""
        if not self.too_short:
            return []
        where = ", ".join(dict.fromkeys(self.too_short))
        return [
            f"not masked: {where} (shorter than {MIN_SECRET_LENGTH} characters, which would"
            " blank out ordinary text)"
        ]

    def __bool__(self) -> bool:
        return bool(self.values)


def add_mask_value(line: bytes) -> str | None:
    """The value of an `::add-mask::` command line (as the runner reads it), else None."""
    text = line.lstrip()
    if not text.startswith(_ADD_MASK):
        return None
    data = text[len(_ADD_MASK) :].rstrip(b"\r").decode("utf-8", errors="replace")
    return _ESCAPED.sub(lambda m: _UNESCAPE[m.group(0).upper()], data)


def mask_record(value: T, mask: Callable[[str], str]) -> T:
    """`value` with `mask` applied to every string inside it: records (NamedTuples), tuples,
    lists and dicts, as reports are made of. Numbers and None stay as they are."""
    return _masked(value, mask)  # type: ignore[no-any-return]


def _masked(value: Any, mask: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return mask(value)
    if hasattr(value, "_fields"):  # a NamedTuple record
        return type(value)(*(_masked(item, mask) for item in value))
    if isinstance(value, (tuple, list)):
        return type(value)(_masked(item, mask) for item in value)
    if isinstance(value, dict):
        return {key: _masked(item, mask) for key, item in value.items()}
    return value


class MaskedStream:
    """A step's output, masked line by line before it reaches the log file and the terminal.

    Whole lines, so that a secret split between two reads is still found; a line longer than
    `limit` is passed on in pieces rather than held in memory. `on_mask` hears each value that an
    `::add-mask::` line registers, before the line itself is passed on (masked).
    """

    def __init__(
        self,
        masker: Masker,
        sinks: Iterable[Callable[[bytes], object]],
        limit: int = 1 << 16,
        on_mask: Callable[[str], object] | None = None,
    ):
        self.masker = masker
        self.sinks = list(sinks)
        self.limit = limit
        self.on_mask = on_mask
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
        for value in self.masker.scan(data):
            if self.on_mask is not None:
                self.on_mask(value)
        data = self.masker.mask_bytes(data)
        for sink in self.sinks:
            sink(data)
