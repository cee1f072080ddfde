"""Input fingerprints (is a step up to date?) and the outputs cache (what it leaves behind).

A step's input fingerprint hashes its command, the env the pipeline sets for it, its cwd, the
content of the files its `inputs:` globs select, and the fingerprints of the steps it needs: an
edit to a needed step's inputs changes its dependents' fingerprints too.

**Content ids.** A file's id is its mode and its git blob id (`<mode> <sha>`, as `git ls-files -s`
shows). Tracked files that match the index take the index's id, with no read at all; files that
differ from it (`git diff-files`), and untracked files that are not ignored, are hashed the way git
would hash them, and only when some step's globs select them. So an id depends on the content
alone: committing a file does not change it, and a file only touched has the id it had. (A file
that git stores through a clean filter, LFS or `core.autocrlf`, hashes differently in the work
tree: at worst its step runs once more.) A file deleted from the work tree is absent, as if never
tracked; a submodule counts by the commit the index records.

**Outside a git repository** the folder is walked instead, leaving out every folder whose name
starts with a dot (`.git`, `.ci-orchestrator`, and the `.venv`, `.tox` and `.pytest_cache` kinds,
which change on every run and would make a `**` input never up to date); dot-files are kept.

Reading the tree costs three git processes, started together (`git ls-files -s`, `git
diff-files`, `git ls-files -o`), and a sorted path list: globs select from it by bisecting on their
literal prefix (`changes.PathFilter.select`), each distinct glob once per run.
"""

from __future__ import annotations

import contextlib
import graphlib
import hashlib
import io
import json
import os
import stat
import subprocess
import tarfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import BinaryIO, NamedTuple, Protocol

from ci_orchestrator.changes import PathFilter
from ci_orchestrator.fingerprint import step_fingerprint
from ci_orchestrator.state import safe_filename

GIT_TIMEOUT_S = 10.0
_CHUNK = 1 << 16
_VERSION = "inputs/1"  # in every fingerprint: a change of what it covers invalidates the old ones
_UNREAD = ""  # the id of a file not hashed yet (the work tree differs from the index, or untracked)
_GITLINK = "160000"
_READ_ONLY = ["--no-optional-locks"]  # reading must never take the index lock


class InputTree:
    """Every file of the work tree a step may name as an input, with its content id, read once
    per run (see the module's docstring). Paths are POSIX, relative to `root`."""

    def __init__(self, root: Path, ids: Mapping[str, str], git_hash: Callable[[], _Hasher]) -> None:
        self.root = root
        self._paths = sorted(ids)
        self._ids: list[str | None] = [ids[path] for path in self._paths]
        self._git_hash = git_hash
        self._selections: dict[str, frozenset[int]] = {}  # a glob's matches, by its text
        self._digests: dict[tuple[str, ...], tuple[str, int]] = {}

    @classmethod
    def read(cls, root: Path) -> InputTree:
        """The tree under `root`: the top of a git work tree (or a folder in one), or any folder
        outside git."""
        try:
            processes = [
                _git(["ls-files", "-s", "-z"], root),
                _git(["diff-files", "--relative", "--name-only", "-z"], root),
                _git(["ls-files", "-z", "--others", "--exclude-standard"], root),
            ]
        except OSError:  # no git: a folder like any other
            return cls(root, _walk(root), hashlib.sha1)
        try:
            outputs = [p.communicate(timeout=GIT_TIMEOUT_S)[0] for p in processes]
        except subprocess.TimeoutExpired:
            for process in processes:
                process.kill()
                process.communicate()
            raise OSError(f"git took more than {GIT_TIMEOUT_S:.0f} s to list {root}") from None
        if any(p.returncode != 0 for p in processes):
            return cls(root, _walk(root), hashlib.sha1)  # not a git repository
        staged, modified, untracked = (os.fsdecode(output).split("\0") for output in outputs)
        ids, sha_length = _index(staged)
        for path in modified:
            if path and not ids.get(path, "").startswith(_GITLINK):
                ids[path] = _UNREAD
        for path in untracked:
            if path and not path.endswith("/"):  # `dir/`: a nested repository, not a file
                ids[path] = _UNREAD
        # A repository with SHA-256 object names hashes the work tree the same way.
        return cls(root, ids, hashlib.sha256 if sha_length == 64 else hashlib.sha1)

    def __len__(self) -> int:
        return len(self._paths)

    def digest(self, globs: Sequence[str]) -> tuple[str, int]:
        """A hex digest over the sorted (path, content id) pairs of the files `globs` select,
        and how many they are."""
        key = tuple(globs)
        known = self._digests.get(key)
        if known is not None:
            return known
        hasher = hashlib.sha256()
        count = 0
        pairs = []
        for index in PathFilter(key).select(self._paths, self._selections) if key else ():
            content = self._id(index)
            if content is not None:
                pairs.append(f"{self._paths[index]}\0{content}\0")
                count += 1
        hasher.update("".join(pairs).encode("utf-8", "surrogateescape"))
        result = self._digests[key] = (hasher.hexdigest(), count)
        return result

    def _id(self, index: int) -> str | None:
        content = self._ids[index]
        if content == _UNREAD:
            content = self._ids[index] = _content_id(self.root / self._paths[index], self._git_hash)
        return content


def input_fingerprints(steps: Mapping[str, StepInputs], tree: InputTree) -> dict[str, str]:
    """Every step's input fingerprint (a step that declares no `inputs:` has one too: its
    dependents include it). Needs that are not in `steps` count by their name alone; a cycle
    raises `graphlib.CycleError`."""
    order = graphlib.TopologicalSorter(
        {name: [n for n in step.needs if n in steps] for name, step in steps.items()}
    ).static_order()
    here = str(tree.root)
    fingerprints: dict[str, str] = {}
    for name in order:
        step = steps[name]
        content, _ = tree.digest(step.inputs)
        needs = sorted((need, fingerprints.get(need, "")) for need in set(step.needs))
        data = [_VERSION, step_fingerprint(step.command, step.env, step.cwd, here), content, needs]
        fingerprints[name] = _hex(json.dumps(data))
    return fingerprints


class StepInputs(NamedTuple):
    """What a step's input fingerprint covers. `inputs` are globs relative to the tree's root."""

    command: str | None
    env: Mapping[str, str]
    cwd: str | None
    inputs: tuple[str, ...]
    needs: tuple[str, ...]


# --- the outputs cache ---


class CacheResult(NamedTuple):
    ok: bool  # stored, or restored
    message: str  # for the user, one line
    files: int = 0


DEFAULT_LIMIT_BYTES = 500 * 1024 * 1024
KEEP = 3  # entries kept per step, the most recently stored or restored
_MANIFEST = ".ci-orchestrator-outputs.json"  # the last member: the entry is whole


class OutputCache:
    """The `outputs:` of passing steps, one tar file per step and fingerprint under
    `<state_dir>/cache/outputs/<step>/`, put back when the step is up to date.

    Regular files keep their mode (less setuid/setgid and group/other write, as tarfile's `tar`
    filter does) and symbolic links stay links; nothing may lead outside the repository (a glob
    with `..`, a link pointing out), on the way in or out. An entry is written under a temporary
    name and renamed, and ends with a manifest holding a hash of everything before it: an entry
    that does not check out (corrupt, cut short, tampered with) is deleted and reported, so the
    step runs and stores it again."""

    def __init__(self, root: Path, state_dir: Path, limit_bytes: int = DEFAULT_LIMIT_BYTES) -> None:
        self.root = root
        self.folder = state_dir / "cache" / "outputs"
        self.limit_bytes = limit_bytes

    def entry(self, step: str, fingerprint: str) -> Path:
        return self.folder / safe_filename(step) / f"{safe_filename(fingerprint)}.tar"

    def has(self, step: str, fingerprint: str) -> bool:
        return self.entry(step, fingerprint).is_file()

    def store(self, step: str, fingerprint: str, globs: Sequence[str]) -> CacheResult:
        """Keep the files `globs` (relative to the root) select, unless they are over the
        limit; then keep only the newest entries of the step."""
        for glob in globs:
            problem = PathFilter.check(glob)
            if problem is not None:
                return CacheResult(False, f"outputs not stored: {glob!r}: {problem}")
        wanted = PathFilter(globs)
        try:
            files = wanted.matching(self._candidates(wanted))
            size = 0
            for path in files:
                info = (self.root / path).lstat()
                if stat.S_ISLNK(info.st_mode) and not _inside(path, os.readlink(self.root / path)):
                    why = f"{path} links outside the repository"
                    return CacheResult(False, f"outputs not stored: {why}")
                size += info.st_size if stat.S_ISREG(info.st_mode) else 0
        except OSError as exc:
            return CacheResult(False, f"outputs not stored: {exc}")
        if not files:
            shown = ", ".join(globs)
            return CacheResult(False, f"outputs not stored: {shown} matched no file")
        if size > self.limit_bytes:
            return CacheResult(
                False,
                f"outputs not stored: {len(files)} files of {_size(size)}, over the cache's"
                f" limit of {_size(self.limit_bytes)}",
            )
        target = self.entry(step, fingerprint)
        temp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            self._write(temp, files)
            os.replace(temp, target)
        except OSError as exc:
            temp.unlink(missing_ok=True)
            return CacheResult(False, f"outputs not stored: {exc.strerror or exc}")
        self._prune(target.parent)
        return CacheResult(True, f"stored {_count(len(files))} ({_size(size)})", len(files))

    def restore(self, step: str, fingerprint: str) -> CacheResult:
        """Put the entry's files back in the work tree (replacing what is there, and never
        writing through a link). A corrupt entry is deleted."""
        entry = self.entry(step, fingerprint)
        if not entry.is_file():
            return CacheResult(False, "no cached outputs for these inputs")
        try:
            with tarfile.open(entry, "r:") as archive:
                members = self._verified(archive)
                problem = self._extract(archive, members)
        except (OSError, tarfile.TarError, ValueError) as exc:
            return self._drop(entry, str(exc))
        if problem is not None:
            return CacheResult(False, f"outputs not restored: {problem}")
        with contextlib.suppress(OSError):
            os.utime(entry)  # used: the last entry pruning removes
        return CacheResult(True, f"restored {_count(len(members))}", len(members))

    # --- the parts ---

    def _candidates(self, found: PathFilter) -> list[str]:
        """Files and links in the folders the globs start from (outputs are mostly ignored
        files, which git does not list), leaving out `.git` and the state folder."""
        skip = {(self.root / ".git").resolve(), self.folder.parents[1].resolve()}
        paths: set[str] = set()
        folders = found.folders()
        for folder in folders:
            if any(
                folder.startswith(f"{other}/") or not other for other in folders if other != folder
            ):
                continue  # walked with the folder above it
            for top, dirs, names in os.walk(self.root / folder):
                here = Path(top)
                relative = here.relative_to(self.root).as_posix()
                links = [d for d in dirs if (here / d).is_symlink()]  # a link is kept, not followed
                dirs[:] = [d for d in dirs if d not in links and (here / d).resolve() not in skip]
                for name in (*names, *links):
                    paths.add(name if relative == "." else f"{relative}/{name}")
        return sorted(paths)

    def _write(self, temp: Path, files: Sequence[str]) -> None:
        hasher = hashlib.sha256()
        with tarfile.open(temp, "w", format=tarfile.PAX_FORMAT) as archive:
            for path in files:
                info = archive.gettarinfo(self.root / path, arcname=path)
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                _record(hasher, info)
                if info.isreg():
                    with open(self.root / path, "rb") as data:
                        archive.addfile(info, _Hashing(data, hasher))
                else:
                    archive.addfile(info)
            manifest = json.dumps({"files": len(files), "sha256": hasher.hexdigest()}).encode()
            info = tarfile.TarInfo(_MANIFEST)
            info.size = len(manifest)
            archive.addfile(info, io.BytesIO(manifest))

    def _verified(self, archive: tarfile.TarFile) -> list[tarfile.TarInfo]:
        """The entry's members, once every one has been read back and checked against the
        manifest; ValueError (or a tarfile error) saying what is wrong."""
        hasher = hashlib.sha256()
        members: list[tarfile.TarInfo] = []
        manifest = None
        for member in archive:
            if manifest is not None:
                raise ValueError("members after the manifest")
            if member.name == _MANIFEST:
                stream = archive.extractfile(member)
                manifest = json.loads(stream.read()) if stream is not None else None
                continue
            if not (member.isreg() or member.issym()):
                raise ValueError(f"{member.name}: neither a file nor a link")
            if PathFilter.check(member.name) or (
                member.issym() and not _inside(member.name, member.linkname)
            ):
                raise ValueError(f"{member.name}: leads outside the repository")
            _record(hasher, member)
            stream = archive.extractfile(member) if member.isreg() else None
            while stream is not None and (chunk := stream.read(_CHUNK)):
                hasher.update(chunk)
            members.append(member)
        expected = {"files": len(members), "sha256": hasher.hexdigest()}
        if manifest != expected:
            raise ValueError("cut short or altered (it does not match its manifest)")
        return members

    def _extract(self, archive: tarfile.TarFile, members: list[tarfile.TarInfo]) -> str | None:
        """Put the members in the work tree: what was there is removed first, so that
        extracting never writes through a link. Why it failed, or None."""
        try:
            for member in members:
                target = self.root / member.name
                if target.is_symlink() or target.is_file():
                    target.unlink()
                archive.extract(member, self.root, filter="tar")
        except (OSError, tarfile.TarError) as exc:
            return str(exc)
        return None

    def _drop(self, entry: Path, why: str) -> CacheResult:
        entry.unlink(missing_ok=True)
        return CacheResult(False, f"the cached outputs were corrupt ({why}): deleted, so it runs")

    def _prune(self, folder: Path) -> None:
        entries = []
        for path in folder.glob("*.tar"):
            with contextlib.suppress(OSError):
                entries.append((path.stat().st_mtime_ns, path))
        for _, path in sorted(entries, reverse=True)[KEEP:]:
            path.unlink(missing_ok=True)


class _Hashing:
    """A file read through a hasher (the entry's manifest hashes what the tar file holds)."""

    def __init__(self, data: BinaryIO, hasher: _Hasher) -> None:
        self.data, self.hasher = data, hasher

    def read(self, size: int = -1, /) -> bytes:
        chunk = self.data.read(size)
        self.hasher.update(chunk)
        return chunk


def _inside(path: str, link: str) -> bool:
    """Whether a link at `path` (relative to the root) points inside the root."""
    target = os.path.normpath(os.path.join(os.path.dirname(path), link))
    return not os.path.isabs(link) and target != ".." and not target.startswith("../")


def _record(hasher: _Hasher, info: tarfile.TarInfo) -> None:
    fields = [info.name, info.type.decode(), info.mode & 0o7777, info.size, info.linkname]
    hasher.update(json.dumps(fields).encode("utf-8", "surrogateescape"))


# --- content ids ---


class _Hasher(Protocol):  # the part of hashlib's hashes used here
    def update(self, data: bytes, /) -> None: ...
    def hexdigest(self) -> str: ...


def _index(entries: list[str]) -> tuple[dict[str, str], int]:
    """The content ids of `git ls-files -s -z`'s entries (`<mode> <sha> <stage>\t<path>`), and
    the length of the object names. Fixed-width slices: this is the hot loop of a run that
    fingerprints a large tree."""
    entries = [entry for entry in entries if entry]
    if not entries:
        return {}, 40
    end = entries[0].index(" ", 7)  # after the mode (6 digits) and a space, the object name
    ids = {entry[end + 3 :]: entry[:end] for entry in entries}
    for entry in entries:
        if entry[end + 1] != "0":  # an unmerged path (stages 1-3): read from the work tree
            ids[entry[end + 3 :]] = _UNREAD
    return ids, end - 7


def _content_id(path: Path, git_hash: Callable[[], _Hasher]) -> str | None:
    """`<mode> <blob id>` of a file as the work tree has it, as git would compute them; None
    when it is gone (or cannot be read: absent, as deleted)."""
    try:
        info = path.lstat()
        if stat.S_ISLNK(info.st_mode):
            return f"120000 {_blob(git_hash, os.fsencode(os.readlink(path)))}"
        if not stat.S_ISREG(info.st_mode):
            return None
        mode = "100755" if info.st_mode & stat.S_IXUSR else "100644"
        hasher = git_hash()
        hasher.update(b"blob %d\0" % info.st_size)
        with open(path, "rb") as data:
            for chunk in iter(lambda: data.read(_CHUNK), b""):
                hasher.update(chunk)
    except OSError:
        return None
    return f"{mode} {hasher.hexdigest()}"


def _blob(git_hash: Callable[[], _Hasher], content: bytes) -> str:
    hasher = git_hash()
    hasher.update(b"blob %d\0" % len(content) + content)
    return hasher.hexdigest()


def _walk(root: Path) -> dict[str, str]:
    """Every file under `root` outside git, unread; dot-folders left out."""
    ids: dict[str, str] = {}
    for top, dirs, names in os.walk(root):
        here = Path(top)
        relative = here.relative_to(root).as_posix()
        links = [d for d in dirs if (here / d).is_symlink()]  # a link is a file, not followed
        dirs[:] = [d for d in dirs if not d.startswith(".") and d not in links]
        for name in (*names, *links):
            ids[name if relative == "." else f"{relative}/{name}"] = _UNREAD
    return ids


def _git(args: list[str], cwd: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        ["git", *_READ_ONLY, *args],
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )


def _hex(data: str) -> str:
    return hashlib.sha256(data.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def _size(count: int) -> str:
    return f"{count / 1e6:.1f} MB" if count >= 100_000 else f"{count / 1e3:.1f} kB"


def _count(count: int) -> str:
    return f"{count} file" if count == 1 else f"{count} files"
