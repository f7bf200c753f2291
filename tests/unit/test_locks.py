"""The locks: the dev venv is requirements/dev.txt, and each layer ships what the tests ran."""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAYERS = sorted((ROOT / "layers").glob("*/requirements.txt"))


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(path: Path) -> dict[str, str]:
    """name -> version of every `name==version` line (comments and `# via` lines skipped)."""
    found = {}
    for line in path.read_text().splitlines():
        if line and not line[0].isspace() and not line.startswith(("#", "-")):
            match = re.fullmatch(r"([A-Za-z0-9][\w.-]*)(?:\[[\w,.-]+\])?==([\w.+!-]+)", line)
            assert match, f"{path}: not a pin: {line!r}"
            found[normalized(match[1])] = match[2]
    return found


def test_every_layer_has_a_lock_of_its_requirements():
    assert {p.parent.name for p in LAYERS} == {"render", "runtime", "split_engine"}
    for lock in LAYERS:
        locked = pins(lock)
        wanted = pins(lock.with_suffix(".in"))
        assert wanted.items() <= locked.items(), lock  # the top-level pins, at their versions
        assert len(locked) >= len(wanted), lock


@pytest.mark.parametrize("lock", LAYERS, ids=lambda p: p.parent.name)
def test_a_layer_ships_the_versions_the_tests_run(lock: Path):
    dev = pins(ROOT / "requirements" / "dev.txt")
    for name, version in pins(lock).items():
        assert dev.get(name) == version, f"{lock}: {name}=={version}, dev lock {dev.get(name)}"
        assert metadata.version(name) == version, f"{name}: the venv is not the lock"


def test_the_venv_is_the_dev_lock():
    """`make install` installs the lock: a package at another version fails here."""
    drift = {}
    for name, version in pins(ROOT / "requirements" / "dev.txt").items():
        installed = metadata.version(name)
        if installed != version:
            drift[name] = (version, installed)
    assert drift == {}, "locked vs installed; run make install"


def test_the_pins_the_code_depends_on():
    dev = pins(ROOT / "requirements" / "dev.txt")
    # 5.2.6 changes what the IAM-enforced tests see (7 of them fail).
    assert dev["moto"] == "5.2.5"
    # collage/engine/guarded_http.py subclasses urllib3's connection classes: pinned by name.
    assert "urllib3" in pins(ROOT / "layers" / "render" / "requirements.in")
