"""One event loop for a whole run: a selector over every running step's output pipe and pidfd,
timers, cancel tokens, and a wake-up pipe that other threads and signal handlers write to.

Everything it calls back runs on the thread that runs it, so the runner's state needs no lock, and
starting a step or learning that it ended costs no hand-off between threads.
"""

from __future__ import annotations

import contextlib
import heapq
import os
import queue
import selectors
import time
from collections.abc import Callable
from typing import Protocol

Callback = Callable[[], object]


class Cancellable(Protocol):
    """A cancel token as the loop sees it: a descriptor that becomes readable once it is set."""

    def fileno(self) -> int: ...


class Timer:
    """A callback due at a `time.monotonic()` instant; `cancel()` drops it."""

    __slots__ = ("callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callback) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def __lt__(self, other: Timer) -> bool:
        return self.when < other.when

    def cancel(self) -> None:
        self.cancelled = True


class Loop:
    """The selector, the timers and the wake-up pipe; `run_once()` is one turn."""

    def __init__(self) -> None:
        self.selector = selectors.DefaultSelector()
        self.timers: list[Timer] = []
        self.calls: queue.SimpleQueue[Callback] = queue.SimpleQueue()
        self.on_keyboard_interrupt: Callback | None = None
        # token descriptor -> the callbacks waiting for that token, by a key to remove them with
        self.cancel_watches: dict[int, dict[int, Callback]] = {}
        self._watch_keys = 0
        # Descriptors this process inherited and lets its children inherit: a child started with
        # posix_spawn (which, unlike Popen, closes nothing) must not get them. Found once.
        self.inherited_fds = inheritable_fds()
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_read, False)
        os.set_blocking(self._wake_write, False)
        self.selector.register(self._wake_read, selectors.EVENT_READ, self._drain)

    # --- from any thread, or a signal handler ---

    def wake(self) -> None:
        """End the current wait (safe from a signal handler: one write to a non-blocking pipe)."""
        fd = self._wake_write
        if fd >= 0:
            with contextlib.suppress(OSError):  # full (a wake-up is pending anyway) or closed
                os.write(fd, b"\0")

    def call_soon_threadsafe(self, callback: Callback) -> None:
        """Run `callback` on the loop's thread at its next turn (how Python actions report)."""
        self.calls.put(callback)
        self.wake()

    # --- on the loop's thread ---

    def call_at(self, when: float, callback: Callback) -> Timer:
        timer = Timer(when, callback)
        heapq.heappush(self.timers, timer)
        return timer

    def call_later(self, delay: float, callback: Callback) -> Timer:
        return self.call_at(time.monotonic() + delay, callback)

    def add_reader(self, fd: int, callback: Callback) -> None:
        self.selector.register(fd, selectors.EVENT_READ, callback)

    def remove_reader(self, fd: int) -> None:
        self.selector.unregister(fd)

    def on_cancel(self, token: Cancellable, callback: Callback) -> Callback:
        """Call `callback` once `token` is set (at once if it already is); returns the function that
        takes the wish back. Many callbacks share one registration of the token's pipe."""
        fd = token.fileno()
        watchers = self.cancel_watches.get(fd)
        if watchers is None:
            watchers = self.cancel_watches[fd] = {}
            self.add_reader(fd, lambda: self._cancelled(fd))
        key = self._watch_keys = self._watch_keys + 1
        watchers[key] = callback

        def forget() -> None:
            current = self.cancel_watches.get(fd)
            if current is watchers and watchers.pop(key, None) is not None and not watchers:
                del self.cancel_watches[fd]
                self.remove_reader(fd)

        return forget

    def run_once(self) -> None:
        """Wait for the first readable descriptor or due timer, then handle all that are ready."""
        try:
            events = self.selector.select(self._timeout())
        except KeyboardInterrupt:  # SIGINT with Python's default handler: an interrupt like others
            if self.on_keyboard_interrupt is None:
                raise
            self.on_keyboard_interrupt()
            events = []
        registered = self.selector.get_map()
        for key, _ in events:
            # An earlier callback of this turn may have unregistered (and closed) this descriptor.
            if registered.get(key.fd) is key:
                key.data()
        self._run_timers()

    def close(self) -> None:
        fds = (self._wake_read, self._wake_write)
        self._wake_read = self._wake_write = -1
        self.selector.close()
        for fd in fds:
            os.close(fd)

    def _timeout(self) -> float | None:
        timers = self.timers
        while timers and timers[0].cancelled:
            heapq.heappop(timers)
        return max(0.0, timers[0].when - time.monotonic()) if timers else None

    def _run_timers(self) -> None:
        timers = self.timers
        now = time.monotonic()
        while timers and timers[0].when <= now:
            timer = heapq.heappop(timers)
            if not timer.cancelled:
                timer.callback()

    def _drain(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while os.read(self._wake_read, 4096):
                pass
        while True:
            try:
                callback = self.calls.get_nowait()
            except queue.Empty:
                return
            callback()

    def _cancelled(self, fd: int) -> None:
        self.remove_reader(fd)  # the token's pipe stays readable: hear it once
        for callback in list(self.cancel_watches.pop(fd, {}).values()):
            callback()


def inheritable_fds() -> list[int]:
    """This process's descriptors above stderr that a child would inherit."""
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        return []
    found = []
    for name in names:
        fd = int(name)
        if fd > 2:
            with contextlib.suppress(OSError):  # the listing's own descriptor, now closed
                if os.get_inheritable(fd):
                    found.append(fd)
    return found
