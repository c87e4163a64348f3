"""The locks (requirements*.txt) match pyproject.toml's dependencies, pin every package with hashes,
and the environment the tests run in is exactly a lock."""

from __future__ import annotations

import importlib.metadata
import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
# Each lock and the extras `lock.sh` compiles it with.
LOCKS = {"requirements.txt": ("cpu",), "requirements-dev.txt": ("cpu", "dev"),
         "requirements-gpu.txt": ("gpu",), "requirements-dev-gpu.txt": ("gpu", "dev")}
PIN = re.compile(r"^([A-Za-z0-9._-]+)(?:\[[^\]]*\])?==([^\s;\\]+)", re.MULTILINE)


def pins(lock: str) -> dict[str, str]:
    """The lock's packages (canonical names) and their pinned versions."""
    return {canonicalize_name(name): version
            for name, version in PIN.findall((ROOT / lock).read_text())}


def inputs(extras: tuple[str, ...]) -> list[Requirement]:
    return [Requirement(text) for text in PROJECT["dependencies"]] + [
        Requirement(text) for extra in extras for text in PROJECT["optional-dependencies"][extra]]


@pytest.mark.parametrize("lock", LOCKS)
def test_a_lock_pins_every_input_as_pyproject_asks(lock):
    pinned = pins(lock)
    for requirement in inputs(LOCKS[lock]):
        name = canonicalize_name(requirement.name)
        assert name in pinned, f"{lock}: {requirement} is not in the lock; run ./lock.sh"
        assert requirement.specifier.contains(pinned[name], prereleases=True), \
            f"{lock}: {name}=={pinned[name]} does not satisfy {requirement}; run ./lock.sh"


@pytest.mark.parametrize("lock", LOCKS)
def test_a_lock_is_compiled_by_lock_sh_with_a_hash_for_every_package(lock):
    text = (ROOT / lock).read_text()
    extras = " ".join(f"--extra {extra}" for extra in LOCKS[lock])
    assert "--python-version 3.11 " in text.splitlines()[1]
    assert text.splitlines()[1].endswith(f"{extras} -o {lock}")
    assert f"compile {extras} -o {lock}" in (ROOT / "lock.sh").read_text()
    entries = re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 2)[2].strip())
    assert len(entries) == len(pins(lock))
    assert all("--hash=sha256:" in entry for entry in entries)


def test_requires_python_is_what_the_locks_are_compiled_for():
    assert PROJECT["requires-python"] == ">=3.11"


def test_the_environment_is_exactly_a_lock():
    installed = {canonicalize_name(dist.metadata["Name"]): dist.version
                 for dist in importlib.metadata.distributions()}
    lock = "requirements-dev.txt" if "tensorflow-cpu" in installed else "requirements-dev-gpu.txt"
    # pip itself is the venv's, not the lock's.
    assert {name: version for name, version in installed.items() if name != "pip"} == pins(lock)
