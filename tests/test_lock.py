"""The action installs from a hash-pinned lock (issue 11): the lock agrees with pyproject.toml and
action.yml uses it.

Regenerate the lock with the command in its first lines (see docs/action.md, "Pinned installs").
"""

from __future__ import annotations

import re
import sys
from importlib import metadata
from pathlib import Path
from typing import NamedTuple

import pytest
import yaml
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).parent.parent
LOCK = "ci_orchestrator/github/action-requirements.lock"
PYTHONS = ("3.10", "3.11", "3.12", "3.13", "3.14")  # requires-python = ">=3.10"


class Pin(NamedTuple):
    name: str
    version: Version
    marker: Marker | None
    hashes: tuple[str, ...]


def read_lock() -> list[Pin]:
    """The lock's entries: `name==version ; marker`, then `--hash=sha256:...` continuation lines."""
    text = re.sub(r"\s*#.*$", "", (ROOT / LOCK).read_text(), flags=re.M)
    pins = []
    for entry in text.replace("\\\n", " ").splitlines():
        if not entry.strip():
            continue
        requirement_text, *options = re.split(r"\s+(?=--)", entry.strip())
        requirement = Requirement(requirement_text)
        (pinned,) = requirement.specifier
        assert pinned.operator == "==", entry
        hashes = tuple(sha256(option) for option in options)
        name = canonicalize_name(requirement.name)
        pins.append(Pin(name, Version(pinned.version), requirement.marker, hashes))
    return pins


def sha256(option: str) -> str:
    match = re.fullmatch(r"--hash=sha256:([0-9a-f]{64})", option)
    assert match, f"not a sha256 hash: {option}"
    return match[1]


def toml_array(table: str, key: str) -> list[str]:
    """The strings of `key = [...]` in `[table]` of pyproject.toml (tomllib is Python 3.11+)."""
    text = (ROOT / "pyproject.toml").read_text()
    body = re.search(rf"^\[{re.escape(table)}\]$(.*?)(?=^\[|\Z)", text, re.M | re.S)
    assert body, table
    array = re.search(rf"^{key}\s*=\s*\[(.*?)\]", body[1], re.M | re.S)
    assert array, f"{table}.{key}"
    return re.findall(r"[\"']([^\"']+)[\"']", array[1])


def declared() -> list[Requirement]:
    return [
        Requirement(text)
        for text in toml_array("project", "dependencies") + toml_array("build-system", "requires")
    ]


def python_env(version: str) -> dict[str, str]:
    return {"python_version": version, "python_full_version": f"{version}.0"}


def applies(pin: Pin, version: str) -> bool:
    return pin.marker is None or pin.marker.evaluate(python_env(version))


def test_every_pin_has_a_version_and_sha256_hashes() -> None:
    pins = read_lock()
    assert len(pins) > 10
    for pin in pins:
        assert pin.hashes, f"{pin.name} has no hash"


@pytest.mark.parametrize("python", PYTHONS)
def test_every_declared_dependency_is_pinned_within_its_range(python: str) -> None:
    pins = read_lock()
    for requirement in declared():
        name = canonicalize_name(requirement.name)
        matching = [pin for pin in pins if pin.name == name and applies(pin, python)]
        assert len(matching) == 1, f"{name}: {len(matching)} pins for Python {python}"
        assert requirement.specifier.contains(matching[0].version), (
            f"{name}=={matching[0].version} is outside {requirement.specifier} (pyproject.toml)"
        )


@pytest.mark.parametrize("python", PYTHONS)
def test_one_version_of_each_package_per_python(python: str) -> None:
    names = [pin.name for pin in read_lock() if applies(pin, python)]
    assert sorted(names) == sorted(set(names))


def test_the_lock_holds_what_the_pinned_versions_require() -> None:
    """Where this environment has a locked version installed, what that version requires (for this
    Python, with the extras asked of it, such as pyjwt[crypto]) is locked too: `--no-deps` would
    leave it out otherwise."""
    pins = {pin.name: pin for pin in read_lock() if applies(pin, python_now())}
    installed = {name: requirements_of(name) for name, pin in pins.items() if is_installed(pin)}
    extras: dict[str, set[str]] = {name: {""} for name in pins}
    for requirements in installed.values():
        for requirement in requirements:
            extras.setdefault(canonicalize_name(requirement.name), {""}).update(requirement.extras)
    for name, requirements in installed.items():
        for requirement in requirements:
            marker = requirement.marker
            if marker is None or any(marker.evaluate({"extra": e}) for e in extras[name]):
                assert canonicalize_name(requirement.name) in pins, f"{name} needs {requirement}"
    assert len(installed) >= 5  # the runtime dependencies at least are installed here


def is_installed(pin: Pin) -> bool:
    try:
        return Version(metadata.version(pin.name)) == pin.version
    except metadata.PackageNotFoundError:
        return False


def requirements_of(name: str) -> list[Requirement]:
    return [Requirement(text) for text in metadata.requires(name) or []]


def python_now() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def install_step() -> str:
    action = yaml.safe_load((ROOT / "action.yml").read_text())
    (step,) = [s for s in action["runs"]["steps"] if s.get("name") == "Install ci-orchestrator"]
    return str(step["run"])


def test_the_action_installs_from_the_lock_with_hashes_only() -> None:
    lines = [line.strip() for line in install_step().splitlines()]
    locked = [line for line in lines if f'-r "$GITHUB_ACTION_PATH/{LOCK}"' in line]
    assert len(locked) == 1
    assert {"--require-hashes", "--no-deps"} <= set(locked[0].split())
    (own,) = [line for line in lines if line.endswith('"$GITHUB_ACTION_PATH"')]
    assert {"--no-deps", "--no-build-isolation"} <= set(own.split())
    assert lines.index(locked[0]) < lines.index(own)
