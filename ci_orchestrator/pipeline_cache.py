"""A cache of checked pipelines, so that `run` starts without importing and running PyYAML.

An entry is the `Pipeline` model as JSON, kept with the files it came from (the pipeline and
everything it extends: path, size, modification and change times, inode). It is used only while
all of those files are unchanged, by the same version of ci-orchestrator, from the same directory.
Only pipelines that loaded without error are cached, so every mistake is still reported.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ci_orchestrator.__about__ import __version__
from ci_orchestrator.state import STATE_DIR

if TYPE_CHECKING:
    from ci_orchestrator.model import Pipeline

CACHE_FILE = STATE_DIR / "cache" / "pipelines.json"
_ENTRIES_KEPT = 32


def _key(path: Path) -> str:
    return f"{__version__}\0{os.getcwd()}\0{path}"


def _stamp(path: Path) -> list[int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


def _read() -> dict[str, Any]:
    try:
        data = json.loads(CACHE_FILE.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def cached(path: Path) -> Pipeline | None:
    """The pipeline read from `path` before, if none of its files changed since."""
    entry = _read().get(_key(path))
    if not isinstance(entry, dict):
        return None
    for name, stamp in entry.get("files", []):
        if _stamp(Path(name)) != stamp:
            return None
    try:
        return pipeline_from_json(entry["pipeline"])
    except (KeyError, TypeError, ValueError):
        return None


def remember(path: Path, files: Sequence[Path], pipeline: Pipeline) -> None:
    """Keep a pipeline that loaded without error; a cache that cannot be written is skipped."""
    stamps = [[str(f.resolve()), _stamp(f)] for f in files]
    if not CACHE_FILE.parent.parent.is_dir() or any(s is None for _, s in stamps):
        return  # no state folder here (yet): do not make one just for the cache
    entries = _read()
    entries.pop(_key(path), None)
    entries[_key(path)] = {"files": stamps, "pipeline": pipeline_to_json(pipeline)}
    entries = dict(list(entries.items())[-_ENTRIES_KEPT:])
    temp = CACHE_FILE.with_name(f".{CACHE_FILE.name}.{os.getpid()}")
    try:
        CACHE_FILE.parent.mkdir(exist_ok=True)
        temp.write_text(json.dumps(entries))
        os.replace(temp, CACHE_FILE)
    except OSError:
        temp.unlink(missing_ok=True)


def pipeline_to_json(pipeline: Pipeline) -> dict[str, Any]:
    steps = {
        name: {**step._asdict(), "retry": step.retry._asdict(), "env": dict(step.env)}
        for name, step in pipeline.steps.items()
    }
    return {**pipeline._asdict(), "steps": steps, "base_dir": str(pipeline.base_dir)}


def pipeline_from_json(data: dict[str, Any]) -> Pipeline:
    from ci_orchestrator.model import Pipeline, Retry, Step

    steps = {}
    for name, raw in data["steps"].items():
        retry: dict[str, Any] = {
            k: tuple(v) if isinstance(v, list) else v for k, v in raw["retry"].items()
        }
        values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()}
        steps[name] = Step(**{**values, "retry": Retry(**retry)})
    return Pipeline(
        name=data["name"],
        steps=steps,
        source=data["source"],
        base_dir=Path(data["base_dir"]),
        description=data["description"],
        setup=tuple(data.get("setup", ())),
    )
