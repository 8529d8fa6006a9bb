"""The image's lock file (requirements.lock, written by scripts/lock) against pyproject.toml.

Offline: it parses the files. Every dependency of the extras the Dockerfile installs is
pinned in the lock, for the image's platform (python 3.11 on linux x86_64: markers are
evaluated there), with a version its specifier in pyproject.toml allows, and every pin
carries hashes; the Dockerfile installs the lock with ``--require-hashes``, then the
project alone. When this fails after a change of dependencies, run ``scripts/lock``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

tomllib = pytest.importorskip("tomllib")

REPO = Path(__file__).resolve().parents[2]
LOCK = REPO / "requirements.lock"
FIX = "out of date: run scripts/lock (README.md, 'Dependencies') and commit requirements.lock"

#: The image's platform (python:3.11-slim on x86_64), for environment markers.
IMAGE_ENVIRONMENT = {
    "python_version": "3.11",
    "python_full_version": "3.11.0",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
    "os_name": "posix",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
}

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)\s*(?:;\s*([^\\]+?))?\s*(\\?)$")
_HASH = re.compile(r"^--hash=sha256:[0-9a-f]{64}$")


def _pyproject() -> dict[str, object]:
    with (REPO / "pyproject.toml").open("rb") as file:
        return dict(tomllib.load(file))


def _image_extras() -> list[str]:
    """The extras scripts/lock locks (``EXTRAS=(...)``)."""
    found = re.search(r"^EXTRAS=\(([^)]*)\)", (REPO / "scripts" / "lock").read_text(), re.M)
    assert found, "scripts/lock names its extras in EXTRAS=(...)"
    return found.group(1).split()


def parse_lock(text: str) -> dict[str, tuple[Version, list[str]]]:
    """``{name: (version, hashes)}`` of a pip-tools / uv lock with hashes.

    Raises AssertionError on a line that is neither a pin, a hash, a comment nor blank.
    """
    pins: dict[str, tuple[Version, list[str]]] = {}
    current: str | None = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if raw[0].isspace():
            assert current is not None, f"line {number}: a hash before any pin"
            for part in line.rstrip("\\").split():
                assert _HASH.match(part), f"line {number}: not a sha256 hash: {part}"
                if current:
                    pins[current][1].append(part)
            continue
        match = _PIN.match(line)
        assert match, f"line {number}: not a pinned requirement (name==version): {line}"
        name, version, marker, more = match.groups()
        if marker and not Marker(marker).evaluate(IMAGE_ENVIRONMENT):
            current = ""  # pinned for another platform: its hashes are skipped
            continue
        current = canonicalize_name(name)
        assert current not in pins, f"line {number}: {name} is pinned twice"
        assert more, f"line {number}: {name} has no hash"
        pins[current] = (Version(version), [])
    return pins


def image_requirements(pyproject: dict[str, object], extras: list[str]) -> list[Requirement]:
    """The project's requirements with ``extras``, on the image's platform (self-references
    such as ``milvus-rag[server]`` followed)."""
    project = pyproject["project"]
    assert isinstance(project, dict)
    name = canonicalize_name(project["name"])
    optional = project.get("optional-dependencies") or {}
    out: list[Requirement] = []
    seen: set[str] = set()

    def add(texts: list[str], extra: str) -> None:
        for text in texts:
            requirement = Requirement(text)
            env = {**IMAGE_ENVIRONMENT, "extra": extra}
            if requirement.marker is not None and not requirement.marker.evaluate(env):
                continue
            if canonicalize_name(requirement.name) == name:
                for inner in sorted(requirement.extras):
                    if inner not in seen:
                        seen.add(inner)
                        add(list(optional[inner]), inner)
                continue
            out.append(requirement)

    add(list(project.get("dependencies") or []), "")
    for extra in extras:
        assert extra in optional, f"scripts/lock locks extra {extra!r}; pyproject has none"
        seen.add(extra)
        add(list(optional[extra]), extra)
    return out


def test_every_pin_has_hashes() -> None:
    pins = parse_lock(LOCK.read_text())
    assert len(pins) > 20
    for name, (version, hashes) in pins.items():
        assert hashes, f"{name}=={version} has no hash"


def test_the_lock_satisfies_pyproject() -> None:
    pins = parse_lock(LOCK.read_text())
    pyproject = _pyproject()
    requirements = image_requirements(pyproject, _image_extras())
    assert requirements
    for requirement in requirements:
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement} is not in requirements.lock: {FIX}"
        version = pins[name][0]
        assert requirement.specifier.contains(version, prereleases=True), (
            f"requirements.lock pins {name}=={version}, pyproject.toml asks {requirement}: {FIX}"
        )
    assert canonicalize_name(str(pyproject["project"]["name"])) not in pins  # type: ignore[index]
    # The build backend too: the image builds the project without build isolation.
    system = pyproject["build-system"]
    assert isinstance(system, dict)
    for text in system["requires"]:
        requirement = Requirement(text)
        pinned = pins.get(canonicalize_name(requirement.name))
        assert pinned and requirement.specifier.contains(pinned[0], prereleases=True), FIX


def test_dockerfile_installs_the_lock_with_hashes_then_the_project_alone() -> None:
    dockerfile = re.sub(r"\\\n\s*", " ", (REPO / "Dockerfile").read_text())
    runs = [line.strip() for line in dockerfile.splitlines() if line.startswith("RUN ")]
    lock = [i for i, run in enumerate(runs) if "-r requirements.lock" in run]
    assert lock and "--require-hashes" in runs[lock[0]]
    project = [i for i, run in enumerate(runs) if re.search(r"pip install [^&]*\"\.\[", run)]
    assert project and project[0] > lock[0]
    install = runs[project[0]]
    assert "--no-deps" in install and "--no-build-isolation" in install
    extras = re.search(r"\"\.\[([^\]]*)\]\"", install)
    assert extras and sorted(extras.group(1).split(",")) == sorted(_image_extras())
    assert re.search(r"^COPY requirements\.lock ", dockerfile, re.M)


def test_the_check_reads_markers_for_the_image() -> None:
    pyproject = {
        "project": {
            "name": "milvus-rag",
            "dependencies": [
                "milvus-lite>=2.5; sys_platform != 'win32'",
                "pywin32>=300; sys_platform == 'win32'",
                "numpy>=1.26; python_version >= '3.12'",
            ],
            "optional-dependencies": {
                "server": ["fastapi>=0.120.2", "milvus-rag[extra2]"],
                "extra2": ["uvicorn>=0.30; platform_machine == 'x86_64'"],
                "other": ["ray>=2"],
            },
        }
    }
    names = [r.name for r in image_requirements(pyproject, ["server"])]
    assert names == ["milvus-lite", "fastapi", "uvicorn"]
    text = (
        "# header\n"
        "fastapi==0.121.0 \\\n    --hash=sha256:" + "a" * 64 + "\n    # via x\n"
        "pywin32==306 ; sys_platform == 'win32' \\\n    --hash=sha256:" + "b" * 64 + "\n"
    )
    assert parse_lock(text) == {"fastapi": (Version("0.121.0"), ["--hash=sha256:" + "a" * 64])}
    with pytest.raises(AssertionError, match="no hash"):
        parse_lock("fastapi==0.121.0\n")
    with pytest.raises(AssertionError, match="not a pinned requirement"):
        parse_lock("fastapi>=0.121\n")
