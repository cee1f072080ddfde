"""One shell command as a process group: run it, stream its output, time it out, leave nothing.

The command runs under `bash -o pipefail -c` in a new session, so that the whole group (children and
grandchildren) can be signalled at once. One thread per step multiplexes, with `select`, the output
pipe, a pidfd for the exit, and the run's cancel pipe: output reaches the log file and the terminal
as it comes, and the exit is seen the moment it happens (no polling). Only a bounded tail of the
output is kept in memory.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

TAIL_BYTES = 64 * 1024
DEFAULT_GRACE = 5.0
_CHUNK = 64 * 1024
_POLL = 0.05  # only where the kernel gives no pidfd, and while waiting for stragglers to die
_ABANDON = 1.0  # after SIGKILL, how long to wait for the output pipe to close

OutputCallback = Callable[[bytes], None]
# A child's environment: str, or bytes encoded once per run (`encode_env`) so that a spawn does
# not re-encode every variable.
ChildEnv = Mapping[str, str] | Mapping[bytes, bytes]


class Sink(Protocol):
    """Where a step's output goes: a binary file, or anything with `write(bytes)`."""

    def write(self, data: bytes, /) -> object: ...


def shell_argv(command: str) -> list[str]:
    """bash with pipefail when the machine has it, else POSIX sh."""
    bash = _BASH[0]
    return [bash, "-o", "pipefail", "-c", command] if bash else ["/bin/sh", "-c", command]


_BASH = [shutil.which("bash")]
# Like GNU make, a command with no shell syntax runs without a shell: same result, a process less.
_SHELL_CHARS = frozenset("|&;<>()$`\\\"'\n*?[]#~=%{}!")
_BUILTINS = """
    . : [ [[ alias break builtin case cd command continue declare echo eval exec exit export for
    function getopts hash if kill let local printf pwd read readonly return select set shift shopt
    source test time times trap type typeset ulimit umask unalias unset until wait while
"""
_SHELL_WORDS = frozenset(_BUILTINS.split())


def direct_argv(command: str, path: str | None) -> list[str] | None:
    """argv for a command that needs no shell (plain words naming an executable), else None."""
    words = command.split()
    if not words or not _SHELL_CHARS.isdisjoint(command) or words[0] in _SHELL_WORDS:
        return None
    executable = _which(words[0], path)
    return [executable, *words[1:]] if executable else None


_FOUND: dict[tuple[str, str | None], str] = {}


def _which(name: str, path: str | None) -> str | None:
    """`shutil.which`, remembering what it found (a program that later vanishes fails to start,
    and the shell then runs the command instead)."""
    key = (name, path)
    found = _FOUND.get(key)
    if found is None and "/" not in name:
        found = shutil.which(name, path=path)
        if found is not None:
            _FOUND[key] = found
    elif found is None:
        found = shutil.which(name, path=path)
    return found


class CancelToken:
    """Set once to stop every step of a run; a pipe makes it visible to `select`."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._read, self._write = os.pipe()
        self.force = False
        self.reason = ""

    def cancel(self, reason: str, *, force: bool = False) -> None:
        self.force = self.force or force
        if not self._event.is_set():
            self.reason = reason
            self._event.set()
            os.write(self._write, b"x")

    def is_set(self) -> bool:
        return self._event.is_set()

    def fileno(self) -> int:
        return self._read

    def sleep(self, seconds: float) -> None:
        """Sleep that ends early when the run is cancelled (tenacity's sleep between attempts)."""
        self._event.wait(seconds)

    def close(self) -> None:
        for fd in (self._read, self._write):
            with contextlib.suppress(OSError):
                os.close(fd)


@dataclass(frozen=True)
class ShellOutcome:
    exit_code: int | None  # None when the process could not start
    timed_out: bool
    cancelled: bool
    duration: float
    tail: bytes
    error: str = ""  # why the process could not start
    log_error: str | None = None  # why the log file could not be written (a full disk...)

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not (self.timed_out or self.cancelled)


@dataclass
class _Tail:
    limit: int
    data: bytearray

    def add(self, chunk: bytes) -> None:
        self.data += chunk
        if len(self.data) > 2 * self.limit:
            del self.data[: -self.limit]

    def value(self) -> bytes:
        return bytes(self.data[-self.limit :])


def run_shell(
    command: str,
    *,
    log: Sink,
    env: ChildEnv | None = None,
    cwd: str | Path | None = None,
    timeout: float | None = None,
    cancel: CancelToken | None = None,
    on_output: OutputCallback | None = None,
    grace: float = DEFAULT_GRACE,
    tail_bytes: int = TAIL_BYTES,
    on_spawn: Callable[[int], object] | None = None,
) -> ShellOutcome:
    """Run `command`, writing its output to `log` (and `on_output`) until it exits or is stopped.
    `on_spawn` hears the process's pid (its process group's id too) once it runs."""
    started = time.monotonic()
    argv = direct_argv(command, _search_path(env))
    try:
        proc = _spawn(argv or shell_argv(command), env, cwd)
    except OSError as exc:
        if argv is None:
            return ShellOutcome(None, False, False, time.monotonic() - started, b"", str(exc))
        proc = None  # not a binary after all (a script without #!): let the shell run it
    if proc is None:
        try:
            proc = _spawn(shell_argv(command), env, cwd)
        except OSError as exc:
            return ShellOutcome(None, False, False, time.monotonic() - started, b"", str(exc))
    if on_spawn is not None:
        on_spawn(proc.pid)
    watch = _Watch(proc, log, on_output, _Tail(tail_bytes, bytearray()), cancel, grace)
    watch.run(None if timeout is None else started + timeout)
    code = proc.returncode
    return ShellOutcome(
        exit_code=128 - code if code is not None and code < 0 else code,
        timed_out=watch.timed_out,
        cancelled=watch.cancelled,
        duration=time.monotonic() - started,
        tail=watch.tail.value(),
        log_error=watch.log_error,
    )


def encode_env(env: Mapping[str, str]) -> dict[bytes, bytes]:
    """An environment as the kernel takes it: encode it once, then copy it per step."""
    return {os.fsencode(key): os.fsencode(value) for key, value in env.items()}


def _search_path(env: ChildEnv | None) -> str | None:
    if env is None:
        return os.environ.get("PATH")
    for key, value in env.items():
        if key in ("PATH", b"PATH"):
            return os.fsdecode(value)
    return None


def _spawn(
    argv: list[str], env: ChildEnv | None, cwd: str | Path | None
) -> subprocess.Popen[bytes]:
    # Popen, not os.posix_spawn: measured with 8 steps starting at once on their threads,
    # posix_spawn (which keeps the GIL through its vfork) was 3x slower in total; it only pays in
    # a single-threaded loop.
    return subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=cwd,
        start_new_session=True,
    )


class _Watch:
    """The select loop over one process: output, exit, cancel and the deadline."""

    def __init__(
        self,
        proc: subprocess.Popen[bytes],
        log: Sink,
        on_output: OutputCallback | None,
        tail: _Tail,
        cancel: CancelToken | None,
        grace: float,
    ) -> None:
        self.proc = proc
        self.pgid = proc.pid  # the leader of a new session: its pid is the group id
        self.log = log
        self.on_output = on_output
        self.tail = tail
        self.cancel = cancel
        self.grace = grace
        self.timed_out = False
        self.cancelled = False
        self.log_error: str | None = None
        self.term_at: float | None = None
        self.killed = False
        assert proc.stdout is not None
        self.out: int | None = proc.stdout.fileno()
        self.pidfd = _pidfd(proc.pid)

    def run(self, deadline: float | None) -> None:
        try:
            while self.out is not None or self.proc.returncode is None:
                self._step(deadline)
            self._reap_stragglers()
        finally:
            if self.pidfd is not None:
                os.close(self.pidfd)
            assert self.proc.stdout is not None
            self.proc.stdout.close()

    def _step(self, deadline: float | None) -> None:
        readable = self._select(self._wait_for(deadline))
        if self.out is not None and self.out in readable:
            self._read()
        if self.pidfd is None or self.pidfd in readable:
            self.proc.poll()
        if self.cancel is not None and self.cancel.fileno() in readable:
            self.cancelled = self.proc.returncode is None
            self._stop(force=self.cancel.force)
        now = time.monotonic()
        if deadline is not None and now >= deadline and self.term_at is None:
            self.timed_out = True
            self._stop()
        if self.term_at is not None and not self.killed:
            force = self.cancel is not None and self.cancel.force
            if force or now >= self.term_at + self.grace:
                self._kill()
        if self.proc.returncode is not None and self.out is not None:
            if self.term_at is None:
                self._stop()  # the shell is gone but something it started still holds the output
            elif self.killed and now > self.term_at + self.grace + _ABANDON:
                self.out = None  # held by a process that left the group: stop reading

    def _wait_for(self, deadline: float | None) -> float | None:
        now = time.monotonic()
        waits = []
        if deadline is not None and self.term_at is None:
            waits.append(deadline - now)
        if self.term_at is not None:
            waits.append(min(self.term_at + self.grace - now, 0.1) if not self.killed else 0.1)
        if self.pidfd is None and self.proc.returncode is None:
            waits.append(_POLL)
        return max(0.0, min(waits)) if waits else None

    def _select(self, wait: float | None) -> list[int]:
        fds = [fd for fd in (self.out, self.pidfd) if fd is not None]
        if self.proc.returncode is not None and self.pidfd is not None:
            fds.remove(self.pidfd)
        if self.cancel is not None and not self.cancelled:
            fds.append(self.cancel.fileno())
        if not fds:
            time.sleep(wait or 0)
            return []
        readable, _, _ = select.select(fds, [], [], wait)
        return readable

    def _read(self) -> None:
        assert self.out is not None
        chunk = os.read(self.out, _CHUNK)
        if not chunk:
            self.out = None
            return
        if self.log_error is None:
            try:
                self.log.write(chunk)
            except OSError as exc:  # a full disk must not stop the step: keep the tail, say so
                self.log_error = exc.strerror or str(exc)
        self.tail.add(chunk)
        if self.on_output is not None:
            self.on_output(chunk)

    def _stop(self, *, force: bool = False) -> None:
        if self.term_at is None:
            self.term_at = time.monotonic()
            _signal_group(self.pgid, signal.SIGTERM)
        if force:
            self._kill()

    def _kill(self) -> None:
        self.killed = True
        _signal_group(self.pgid, signal.SIGKILL)

    def _reap_stragglers(self) -> None:
        """Stop whatever the step left running in its group: SIGTERM, the grace period, SIGKILL."""
        if not self.killed:
            if self.term_at is None:
                if not _signal_group(self.pgid, signal.SIGTERM):
                    return  # the usual case: nothing left
                self.term_at = time.monotonic()
            if self._wait_gone(self.term_at + self.grace):
                return
            self._kill()
        self._wait_gone(time.monotonic() + _ABANDON)

    def _wait_gone(self, until: float) -> bool:
        """Wait for the group to have no live member; False if it still has one at `until`."""
        while group_alive(self.pgid):
            forced = self.cancel is not None and self.cancel.force and not self.killed
            if forced or time.monotonic() >= until:
                return False
            time.sleep(_POLL / 5)
        return True


def _pidfd(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


def _signal_group(pgid: int, sig: int) -> bool:
    """Signal a process group; False when it no longer exists."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def group_alive(pgid: int) -> bool:
    """Whether a process group has a member that is not a zombie.

    Zombies count as gone: where PID 1 does not reap orphans, a killed grandchild stays a zombie
    in the group forever, and it can no longer do anything.
    """
    if not os.path.isdir("/proc"):
        return _signal_group(pgid, 0)
    with os.scandir("/proc") as entries:
        for entry in entries:
            if entry.name.isdigit():
                state = process_state(int(entry.name))
                if state is not None and state[1] == pgid and state[0] not in "ZX":
                    return True
    return False


def process_state(pid: int) -> tuple[str, int] | None:
    """(state letter, process group) from /proc/PID/stat, or None when the process is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode(errors="replace")
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return fields[0], int(fields[2])


def process_gone(pid: int) -> bool:
    """True when `pid` has exited; a zombie counts as gone."""
    state = process_state(pid)
    return state is None or state[0] in "ZX"
