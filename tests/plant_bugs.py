"""Plants known bugs one at a time in a scratch copy of the repository, runs the fast tests meant to
catch each, and prints which were caught and which survived.

    python -m tests.plant_bugs [--only TEXT] [--record]

A list of our own rather than mutmut or cosmic-ray: those generate thousands of operator mutants
and rerun tests for each, hours on two cores with TensorFlow starting every time; these are bugs
that would change results or lose data, in the modules that guard them, each run against only the
tests written to catch it (`-m "not slow"`). Exits 1 when a bug survives or the unchanged copy fails
its tests. The list lives in tests/planted_bugs.py; `--record` writes the results to
docs/planted-bugs.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.planted_bugs import PLANTED_BUGS, PlantedBug

ROOT = Path(__file__).resolve().parents[1]
RECORD = ROOT / "docs/planted-bugs.md"
TIMEOUT_S = 900


def copy_repository(destination: Path) -> None:
    """Copies the files git tracks or would track (uncommitted changes included)."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)


def run_tests(copy: Path, tests: list[str]) -> tuple[int, float]:
    """Runs the fast tests among `tests` in `copy`: pytest's exit code and the seconds it took."""
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-n", "0", "-m", "not slow",
                             "-p", "no:cacheprovider", *tests], cwd=copy,
                            env={**os.environ, "PYTHONPATH": str(copy)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=TIMEOUT_S)
    return result.returncode, time.monotonic() - started


def try_bug(copy: Path, bug: PlantedBug) -> tuple[str, float]:
    """Plants `bug`, runs its tests and takes the bug out again: 'caught', 'SURVIVED' or 'error'."""
    path = copy / bug.file
    original = path.read_text(encoding="utf-8")
    if original.count(bug.original) != 1:
        raise SystemExit(f"error: {bug.file}: the text to change for {bug.name!r} is not there once")
    path.write_text(original.replace(bug.original, bug.planted), encoding="utf-8")
    try:
        code, seconds = run_tests(copy, bug.tests)
    finally:
        path.write_text(original, encoding="utf-8")
    return {0: "SURVIVED", 1: "caught"}.get(code, f"error (pytest exit {code})"), seconds


def write_record(bugs: list[PlantedBug], results: list[tuple[str, float]]) -> None:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True, check=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.strip()
    rows = [f"| {bug.name} | `{bug.file}` | {' '.join(f'`{test}`' for test in bug.tests)} | "
            f"{outcome} | {seconds:.0f} |" for bug, (outcome, seconds) in zip(bugs, results, strict=True)]
    RECORD.write_text("\n".join([
        "# Planted bugs: the last recorded run",
        "",
        f"Written by `python -m tests.plant_bugs --record` on {time.strftime('%Y-%m-%d')} at commit "
        f"{commit}{' with uncommitted changes' if dirty else ''}; see [testing.md](testing.md#planted-bugs).",
        "",
        "| planted bug | file | tests run (`-m \"not slow\"`) | outcome | seconds |",
        "|---|---|---|---|---|",
        *rows, ""]), encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="plant only the bugs whose name contains TEXT")
    parser.add_argument("--record", action="store_true", help=f"write the results to {RECORD}")
    arguments = parser.parse_args()
    bugs = [bug for bug in PLANTED_BUGS if arguments.only in bug.name]
    with tempfile.TemporaryDirectory(prefix="plant-bugs-") as scratch:
        copy = Path(scratch)
        copy_repository(copy)
        code, seconds = run_tests(copy, sorted({test for bug in bugs for test in bug.tests}))
        print(f"unchanged copy: {'passes' if code == 0 else f'FAILS (pytest exit {code})'} "
              f"({seconds:.0f} s)")
        if code != 0:
            sys.exit(1)
        results = []
        for bug in bugs:
            outcome, seconds = try_bug(copy, bug)
            results.append((outcome, seconds))
            print(f"{outcome:9} {seconds:4.0f} s  {bug.name}  [{bug.file}; {' '.join(bug.tests)}]",
                  flush=True)
    outcomes = [outcome for outcome, _ in results]
    caught, survived = outcomes.count("caught"), outcomes.count("SURVIVED")
    print(f"{len(bugs)} planted bugs: {caught} caught, {survived} survived, "
          f"{len(bugs) - caught - survived} errors")
    if arguments.record:
        write_record(bugs, results)
    sys.exit(0 if caught == len(bugs) else 1)


if __name__ == "__main__":
    main()
