"""Whether git, started in a folder, could find a repository there: answered in-process, so that a
run outside any repository starts no git process only to learn that there is none.

`outside_repository` follows git's discovery (setup.c, `setup_git_directory_gently_1`): from the
physical current folder up to the root, or to the deepest `GIT_CEILING_DIRECTORIES` entry above
it, git looks in each folder for a `.git` entry (a repository, or a `gitdir: ...` file of a
worktree or submodule) and for a bare repository (a folder with a `HEAD`). The answer is True only
when no such folder has either name; finding one, or anything unexpected, means "ask git" (False),
never a guess that could hide a repository. It looks at more than git does: it does not stop at
file system boundaries (git does, unless GIT_DISCOVERY_ACROSS_FILESYSTEM) and does not check that
what it finds is valid, which only sends more folders to git.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

# Either one means git does not discover (GIT_DIR) or that the caller chose the work tree
# (GIT_WORK_TREE): git is asked.
_EXPLICIT = ("GIT_DIR", "GIT_WORK_TREE")
# A repository (directory), a worktree's or submodule's `gitdir:` file; a bare repository's HEAD.
_MARKERS = (".git", "HEAD")


def outside_repository(
    folder: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None
) -> bool:
    """True when git started in `folder` (default: here) with `environ` (default: this process's
    environment, the one git processes inherit) would find no repository; False when it may find
    one, or when the answer is not certain (GIT_DIR or GIT_WORK_TREE set, not a POSIX system, a
    folder that cannot be read)."""
    env = os.environ if environ is None else environ
    if os.name != "posix" or any(name in env for name in _EXPLICIT):
        return False
    try:
        # git starts from getcwd() after its chdir: the physical path, symlinks resolved.
        here = os.getcwd() if folder is None else os.path.realpath(folder, strict=True)
    except OSError:
        return False
    if not os.path.isdir(here):
        return False
    ceiling = _ceiling_offset(here, env.get("GIT_CEILING_DIRECTORIES"))
    while True:
        for marker in _MARKERS:
            try:
                os.lstat(os.path.join(here, marker))
            except FileNotFoundError:
                continue
            except OSError:
                return False
            return False
        parent = os.path.dirname(here)
        if parent == here or len(parent.rstrip("/")) <= ceiling:
            return True
        here = parent


def _ceiling_offset(path: str, value: str | None) -> int:
    """The length of the longest GIT_CEILING_DIRECTORIES entry that is a proper ancestor of
    `path` (`/` counts as 0), or -1: git looks in no folder whose path is not longer.

    As git does: entries are separated by `:`; relative entries are ignored; entries are resolved
    to their physical path, except those after an empty entry, which are taken as written. An
    entry git could not resolve is dropped here too (the walk then goes further up, never less
    far than git's)."""
    if value is None:
        return -1
    longest = -1
    resolve = True
    for entry in value.split(":"):
        if not entry:
            resolve = False
            continue
        ceiling = _resolved(entry) if resolve else entry
        if ceiling is None or not ceiling.startswith("/"):
            continue
        length = len(ceiling) - 1 if ceiling.endswith("/") else len(ceiling)
        below = path[length : length + 1] == "/" and len(path) > length + 1
        if below and path[:length] == ceiling[:length]:
            longest = max(longest, length)
    return longest


def _resolved(entry: str) -> str | None:
    """An absolute entry's physical path; None for a relative entry or one that cannot be
    resolved (git ignores both)."""
    if not entry.startswith("/"):
        return None
    try:
        return os.path.realpath(entry, strict=True)
    except OSError:
        return None
