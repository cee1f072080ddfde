"""One shell command as a process group: run it, stream its output, time it out, leave nothing.

The command runs under `bash -o pipefail -c` (or, with no shell syntax, directly) in a new session,
so that the whole group (children and grandchildren) can be signalled at once. A `Child` lives in an
event loop (loop.py) that watches, for every running process at once, its output pipe, a pidfd for
its exit and the run's cancel pipe: output reaches the log file and the terminal as it comes, and
the exit is seen the moment it happens (no polling). Only a bounded tail of the output is kept in
memory.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, Protocol

from ci_orchestrator.procfs import stat_fields

if TYPE_CHECKING:
    from ci_orchestrator.loop import Loop, Timer

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
    bash = _which("bash", None)
    return [bash, "-o", "pipefail", "-c", command] if bash else ["/bin/sh", "-c", command]


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
    """`which`, remembering what it found (a program that later vanishes fails to start, and the
    shell then runs the command instead)."""
    key = (name, path)
    found = _FOUND.get(key)
    if found is None and "/" not in name:
        found = which(name, path)
        if found is not None:
            _FOUND[key] = found
    elif found is None:
        found = which(name, path)
    return found


def which(name: str, path: str | None = None) -> str | None:
    """What `shutil.which(name, path=path)` answers on POSIX: the first executable file (not a
    folder) named `name` in `path` (default $PATH). Written out because importing shutil (and
    the compression modules it imports) cost every run a few milliseconds before its first step.
    """
    if os.path.dirname(name):
        return name if _executable(name) else None
    if path is None:
        path = os.environ.get("PATH", os.defpath)
    if not path:
        return None
    seen = set()
    for folder in path.split(os.pathsep):
        if folder not in seen:
            seen.add(folder)
            candidate = os.path.join(folder, name)
            if _executable(candidate):
                return candidate
    return None


def _executable(path: str) -> bool:
    return os.path.exists(path) and os.access(path, os.X_OK) and not os.path.isdir(path)


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


class ShellOutcome(NamedTuple):
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


class _Tail:
    """The last `limit` bytes of a stream, trimmed in amortised steps."""

    def __init__(self, limit: int, data: bytearray) -> None:
        self.limit = limit
        self.data = data

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
    `on_spawn` hears the process's pid (its process group's id too) once it runs. One process in a
    loop of its own: the runner's loop runs many `Child`ren the same way."""
    from ci_orchestrator.loop import Loop

    loop = Loop()
    outcome: list[ShellOutcome] = []
    try:
        Child(
            loop,
            command,
            log=log,
            env=env,
            cwd=cwd,
            timeout=timeout,
            cancel=cancel,
            on_output=on_output,
            grace=grace,
            tail_bytes=tail_bytes,
            on_spawn=on_spawn,
            on_exit=outcome.append,
        ).start()
        while not outcome:
            loop.run_once()
    finally:
        loop.close()
    return outcome[0]


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


class _Process(Protocol):
    """A started child: its pid (the id of its process group too) and its exit code once known."""

    pid: int

    def poll(self) -> int | None: ...


class _Spawned:
    """A child started by `os.posix_spawn`: reaped here with `waitpid`."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:  # reaped by someone else: its code is lost
                self.returncode = 255
                return self.returncode
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode


# posix_spawn costs the parent less than half of Popen's CPU per process (no Python-level set-up,
# no error pipe), but has no chdir before the exec: a step with a `cwd` is started by Popen.
_POSIX_SPAWN = hasattr(os, "posix_spawn") and hasattr(os, "POSIX_SPAWN_DUP2")


def _spawn(
    argv: list[str], env: ChildEnv | None, cwd: str | Path | None, inherited: list[int]
) -> tuple[_Process, int]:
    """Start `argv` in a new session, stdin from /dev/null, stdout and stderr into one pipe, no
    other descriptor of ours open in it: the process and the pipe's read end."""
    read, write = os.pipe()
    try:
        if cwd is None and _POSIX_SPAWN:
            actions = [
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_DUP2, write, 1),
                (os.POSIX_SPAWN_DUP2, write, 2),
                *((os.POSIX_SPAWN_CLOSE, fd) for fd in inherited),
            ]
            environment = os.environ if env is None else env
            pid = os.posix_spawn(argv[0], argv, environment, file_actions=actions, setsid=True)
            return _Spawned(pid), read
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=write,
            stderr=write,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
        return proc, read
    except BaseException:
        os.close(read)
        raise
    finally:
        os.close(write)


class Child:
    """One command as a process group in a `Loop`: its output streamed as it comes, its exit seen
    through a pidfd, its timeout and cancel turned into TERM, grace, KILL, and whatever it left
    running in its group ended before `on_exit` hears the outcome. Never blocks the loop."""

    def __init__(
        self,
        loop: Loop,
        command: str,
        *,
        log: Sink,
        on_exit: Callable[[ShellOutcome], object],
        env: ChildEnv | None = None,
        cwd: str | Path | None = None,
        timeout: float | None = None,
        cancel: CancelToken | None = None,
        on_output: OutputCallback | None = None,
        grace: float = DEFAULT_GRACE,
        tail_bytes: int = TAIL_BYTES,
        on_spawn: Callable[[int], object] | None = None,
    ) -> None:
        self.loop = loop
        self.command = command
        self.log = log
        self.on_exit = on_exit
        self.env = env
        self.cwd = cwd
        self.timeout = timeout
        self.cancel = cancel
        self.on_output = on_output
        self.grace = grace
        self.tail = _Tail(tail_bytes, bytearray())
        self.on_spawn = on_spawn
        self.started = 0.0
        self.timed_out = False
        self.cancelled = False
        self.log_error: str | None = None
        self.term_at: float | None = None
        self.killed = False
        self.reaping = False
        self.returncode: int | None = None
        self.out: int | None = None
        self.pidfd: int | None = None
        self.timers: list[Timer] = []
        self.forget_cancel: Callable[[], object] | None = None
        self.proc: _Process
        self.pgid = 0
        self.gone_by = 0.0

    def start(self) -> None:
        """Spawn it (the shell only if the command needs one, or if exec failed: a script without
        #!); a command that cannot start ends at once, with the reason in the outcome."""
        self.started = time.monotonic()
        argv = direct_argv(self.command, _search_path(self.env))
        try:
            self.proc, self.out = self._spawn(argv or shell_argv(self.command))
        except OSError as exc:
            if argv is None:
                self.on_exit(ShellOutcome(None, False, False, self._elapsed(), b"", str(exc)))
                return
            try:
                self.proc, self.out = self._spawn(shell_argv(self.command))
            except OSError as exc2:
                self.on_exit(ShellOutcome(None, False, False, self._elapsed(), b"", str(exc2)))
                return
        self.pgid = self.proc.pid  # the leader of a new session: its pid is the group's id
        if self.on_spawn is not None:
            self.on_spawn(self.proc.pid)
        self.loop.add_reader(self.out, self._read)
        self.pidfd = _pidfd(self.proc.pid)
        if self.pidfd is not None:
            self.loop.add_reader(self.pidfd, self._exited)
        else:
            self._later(_POLL, self._exited)
        if self.timeout is not None:
            self.timers.append(self.loop.call_at(self.started + self.timeout, self._deadline))
        if self.cancel is not None:
            self.forget_cancel = self.loop.on_cancel(self.cancel, self._cancelled)

    def _spawn(self, argv: list[str]) -> tuple[_Process, int]:
        return _spawn(argv, self.env, self.cwd, self.loop.inherited_fds)

    def _elapsed(self) -> float:
        return time.monotonic() - self.started

    def _later(self, delay: float, callback: Callable[[], object]) -> None:
        self.timers.append(self.loop.call_later(delay, callback))

    # --- what the loop calls ---

    def _read(self) -> None:
        assert self.out is not None
        try:
            chunk = os.read(self.out, _CHUNK)
        except OSError:
            chunk = b""
        if not chunk:
            self._close_output()
            self._maybe_done()
            return
        if self.log_error is None:
            try:
                self.log.write(chunk)
            except OSError as exc:  # a full disk must not stop the step: keep the tail, say so
                self.log_error = exc.strerror or str(exc)
        self.tail.add(chunk)
        if self.on_output is not None:
            self.on_output(chunk)

    def _exited(self) -> None:
        self.returncode = self.proc.poll()
        if self.returncode is None:  # polling, without a pidfd
            self._later(_POLL, self._exited)
            return
        if self.pidfd is not None:
            self.loop.remove_reader(self.pidfd)
            os.close(self.pidfd)
            self.pidfd = None
        # Its end of the pipe closed as it exited: the end of output, ready in this same turn,
        # comes before deciding that something it started still holds the pipe.
        self._later(0, self._leader_gone)

    def _leader_gone(self) -> None:
        if self.out is not None:
            if self.term_at is None:
                self._stop()  # the shell is gone but something it started still holds the output
            elif self.killed:
                self._abandon_later()
        self._maybe_done()

    def _deadline(self) -> None:
        if self.term_at is None and not self.reaping:
            self.timed_out = True
            self._stop()

    def _cancelled(self) -> None:
        self.forget_cancel = None
        if self.reaping:
            return
        self.cancelled = self.returncode is None
        assert self.cancel is not None
        self._stop(force=self.cancel.force)

    # --- stopping: TERM to the group, the grace period, KILL ---

    def _forced(self) -> bool:
        return self.cancel is not None and self.cancel.force

    def _stop(self, *, force: bool = False) -> None:
        if self.term_at is None:
            self.term_at = time.monotonic()
            _signal_group(self.pgid, signal.SIGTERM)
            self._grace_tick()
        if force:
            self._kill()

    def _grace_tick(self) -> None:
        """Until the grace period is over, look every 0.1 s whether a second interrupt forces it."""
        if self.killed or self.reaping:
            return
        assert self.term_at is not None
        left = self.term_at + self.grace - time.monotonic()
        if left <= 0 or self._forced():
            self._kill()
        else:
            self._later(min(left, 0.1) if self.cancel is not None else left, self._grace_tick)

    def _kill(self) -> None:
        if not self.killed:
            self.killed = True
            _signal_group(self.pgid, signal.SIGKILL)
            if self.out is not None and self.returncode is not None:
                self._abandon_later()

    def _abandon_later(self) -> None:
        assert self.term_at is not None
        until = max(time.monotonic(), self.term_at + self.grace) + _ABANDON
        self.timers.append(self.loop.call_at(until, self._abandon_output))

    def _abandon_output(self) -> None:
        """Killed, exited, and its pipe is still held by a process that left the group: stop
        reading."""
        if self.out is not None and self.returncode is not None:
            self._close_output()
            self._maybe_done()

    def _close_output(self) -> None:
        assert self.out is not None
        self.loop.remove_reader(self.out)
        os.close(self.out)
        self.out = None

    # --- the end: what it left in its group, then the outcome ---

    def _maybe_done(self) -> None:
        if self.out is not None or self.returncode is None or self.reaping:
            return
        self.reaping = True
        for timer in self.timers:
            timer.cancel()
        self.timers = []
        if not self.killed and self.term_at is None:
            if not _signal_group(self.pgid, signal.SIGTERM):
                self._finish()  # the usual case: nothing left
                return
            self.term_at = time.monotonic()
        self.gone_by = time.monotonic() + _ABANDON
        self._reap_tick()

    def _reap_tick(self) -> None:
        """Whatever the step left running in its group: the grace period, then KILL, then up to
        `_ABANDON` for it to die (zombies count as gone)."""
        if not group_alive(self.pgid):
            self._finish()
            return
        now = time.monotonic()
        if not self.killed:
            assert self.term_at is not None
            if self._forced() or now >= self.term_at + self.grace:
                self.killed = True
                _signal_group(self.pgid, signal.SIGKILL)
                self.gone_by = now + _ABANDON
        elif now >= self.gone_by:
            self._finish()
            return
        self._later(_POLL / 5, self._reap_tick)

    def _finish(self) -> None:
        for timer in self.timers:
            timer.cancel()
        self.timers = []
        if self.forget_cancel is not None:
            self.forget_cancel()
            self.forget_cancel = None
        code = self.returncode
        self.on_exit(
            ShellOutcome(
                exit_code=128 - code if code is not None and code < 0 else code,
                timed_out=self.timed_out,
                cancelled=self.cancelled,
                duration=self._elapsed(),
                tail=self.tail.value(),
                log_error=self.log_error,
            )
        )


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
    fields = stat_fields(pid)
    return (fields[0], int(fields[2])) if fields else None


def process_gone(pid: int) -> bool:
    """True when `pid` has exited; a zombie counts as gone."""
    state = process_state(pid)
    return state is None or state[0] in "ZX"
