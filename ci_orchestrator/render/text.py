"""Text helpers the renderers share (pure): what any report does to text that steps printed.

Markdown, HTML, JUnit XML and the terminal report each escape in their own way; before that they
all clean the same things out: unencodable characters, terminal escape sequences, line breaks.
"""

from __future__ import annotations

import re

_NEWLINES = re.compile(r"[\r\n]+")
_UNENCODABLE = re.compile(r"[\x00\ud800-\udfff]")
# Terminal colour and cursor sequences (CSI, OSC, two-character escapes): noise in any report.
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]")


def clean(text: str) -> str:
    """What cannot be encoded (lone surrogates) or is invalid in Markdown (NUL) becomes U+FFFD."""
    return _UNENCODABLE.sub("\ufffd", text)


def strip_ansi(text: str) -> str:
    """`text` without terminal escape sequences."""
    return _ANSI.sub("", text)


def one_line(text: str) -> str:
    """`text` cleaned, each run of line breaks made one space."""
    return _NEWLINES.sub(" ", clean(text))


def log_lines(tail: str, lines: int, chars: int) -> str:
    """The last `lines` lines of a log, at most `chars` characters, as a terminal would show them:
    colour codes removed and a line redrawn with `\\r` reduced to its last state."""
    text = clean(tail[-(chars * 2 + 2048) :])  # the rest cannot be shown; don't scan megabytes
    text = strip_ansi(text).replace("\r\n", "\n")
    last = text.rstrip("\n").split("\n")[-lines:]
    kept = [line.rstrip("\r").rsplit("\r", 1)[-1] for line in last]
    shown = "\n".join(kept)
    return shown if len(shown) <= chars else "…" + shown[-(chars - 1) :]
