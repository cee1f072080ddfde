"""What Linux's /proc says of a process, read with one `read` call (a run reads it for every step
it starts, to tell a reused pid apart)."""

from __future__ import annotations

import os


def stat_fields(pid: int) -> list[str] | None:
    """/proc/PID/stat after the command name: state, ppid, pgrp, ... (None when gone, or where
    there is no /proc)."""
    try:
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        stat = os.read(fd, 4096).decode(errors="replace")  # one line, well under a page
    except OSError:
        return None
    finally:
        os.close(fd)
    end = stat.rfind(")")  # the command name may hold spaces and parentheses
    return stat[end + 2 :].split() if end >= 0 else None
