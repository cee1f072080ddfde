"""The state folder (`.ci-orchestrator/`): run logs and the journal, ignored by git."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

STATE_DIR = Path(".ci-orchestrator")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def ensure_state_dir(path: Path) -> Path:
    """Create the folder with a `.gitignore` that ignores everything in it."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        ignore = path / ".gitignore"
        if not ignore.exists():
            ignore.write_text("# written by ci-orchestrator: logs and the journal stay local\n*\n")
    except OSError as exc:
        from ci_orchestrator.errors import UsageError

        raise UsageError(
            f"cannot write the state folder {path} (run logs and the journal):"
            f" {exc.strerror or exc}; make it writable, or run from another directory"
        ) from None
    return path


def new_run_id() -> str:
    """Sortable and unique across machines: UTC time plus random hex."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + os.urandom(3).hex()


def safe_filename(name: str) -> str:
    """A step name as a file name; names that had to change get a short hash against collisions."""
    safe = _UNSAFE.sub("_", name)[:80] or "_"
    if safe != name:
        import hashlib

        safe += "-" + hashlib.sha1(name.encode()).hexdigest()[:6]
    return safe
