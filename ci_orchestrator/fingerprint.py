"""What code a run ran, and what a step ran: the fingerprints that tell flaky from fixed.

A failure and a pass are flaky evidence only for the same code: the same tracked tree, from a
clean working tree (an amended commit with the same tree is the same code), and the same step
fingerprint (its command, the env the pipeline sets for it, its cwd). A working tree with
uncommitted changes to tracked files is dirty and never evidence; untracked files are not part of
the code (as for `git describe --dirty`).

Reading the tree costs two git processes, started together: HEAD's tree id and the diff of the
working tree against HEAD; `TreeReader` starts them while a run prepares (bench/journal_scale.py
measures the cost), and none in a folder outside any repository (`outside_repository`).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import IO, NamedTuple

from ci_orchestrator.gitdir import outside_repository

GIT_TIMEOUT_S = 10.0
_CHUNK = 1 << 16
# The whole work tree, as the bytes git stores: no external diff, textconv, colour, nor a
# `diff.relative` config that would hide the changes outside the current folder.
_DIFF = (
    "-c", "diff.relative=false", "diff", "HEAD", "--binary", "--no-ext-diff", "--no-textconv",
    "--no-color",
)  # fmt: skip


class TreeState(NamedTuple):
    """The tracked tree a run started from."""

    tree: str  # HEAD's tree id when clean; else a hash of it and the working tree's diff
    dirty: bool  # tracked files differ from HEAD (staged or not)


def read_tree(cwd: Path | None = None) -> TreeState | None:
    """The tracked tree at `cwd` (default: here); None outside a git work tree, before the first
    commit, or when git is missing."""
    return TreeReader(cwd).result()


class TreeReader:
    """Reads the tree in the background: the git processes start now, `result` waits for them
    (so a run can read its tree while it prepares, and before any step changes it). Outside any
    repository it starts none: git could only fail, and `result` is None as it would then be."""

    def __init__(self, cwd: Path | None = None) -> None:
        self.processes: tuple[subprocess.Popen[bytes], ...] = ()
        if outside_repository(cwd):
            return
        try:
            head = _git(["rev-parse", "--verify", "--quiet", "HEAD^{tree}"], cwd)
        except OSError:
            return
        try:
            self.processes = (head, _git(list(_DIFF), cwd))
        except OSError:
            _stop(head)

    def result(self) -> TreeState | None:
        if not self.processes:
            return None
        head, diff = self.processes
        try:
            digest, changed = _digest(diff.stdout)
            tree = (head.communicate(timeout=GIT_TIMEOUT_S)[0] or b"").decode().strip()
            diff.wait(timeout=GIT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            for process in self.processes:
                _stop(process)
            return None
        if head.returncode != 0 or diff.returncode != 0 or not tree:
            return None
        if not changed:
            return TreeState(tree, False)
        return TreeState(hashlib.sha256(tree.encode() + b"\n" + digest).hexdigest()[:40], True)


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.kill()
    process.communicate()


def _git(args: list[str], cwd: Path | None) -> subprocess.Popen[bytes]:
    # --no-optional-locks: reading must never take the index lock from a concurrent git command.
    return subprocess.Popen(
        ["git", "--no-optional-locks", *args],
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )


def _digest(stream: IO[bytes] | None) -> tuple[bytes, bool]:
    """A hash of the stream, read in chunks (a diff can be large); and whether it had any byte."""
    hasher = hashlib.sha256()
    seen = False
    if stream is not None:
        for chunk in iter(lambda: stream.read(_CHUNK), b""):
            hasher.update(chunk)
            seen = True
        stream.close()
    return hasher.digest(), seen


def step_fingerprint(
    command: str | None, env: Mapping[str, str], cwd: str | None, here: str | None = None
) -> str | None:
    """A hash of what a shell step runs: its command, the env the pipeline sets for it and its
    cwd (relative to `here`, default the current directory, when inside it, so that the same
    checkout elsewhere matches). None for a step that is not a shell command."""
    if command is None:
        return None
    data = json.dumps([command, sorted(env.items()), _relative(cwd, here or os.getcwd())])
    return hashlib.sha256(data.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def _relative(cwd: str | None, here: str) -> str:
    if cwd is None:
        return "."
    path = os.path.normpath(os.path.join(here, cwd))
    inside = path == here or path.startswith(here.rstrip(os.sep) + os.sep)
    return os.path.relpath(path, here) if inside else path
