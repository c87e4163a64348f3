"""Runs a command under a memory limit (RLIMIT_AS) and a time limit, for the tests of hostile
inputs: a defect that allocates gigabytes or never ends fails the test instead of the machine."""

from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path

from tests.helpers.project import ROOT, environment_with_code

MB = 1024 * 1024
MEMORY_MB = 1024
SECONDS = 60


def run_bounded(arguments: list[str], cwd: Path = ROOT, memory_mb: int = MEMORY_MB,
                seconds: float = SECONDS) -> subprocess.CompletedProcess:
    """`python ARGUMENTS` with this repository's code, at most `memory_mb` of address space and
    `seconds` of wall time (past it, subprocess.TimeoutExpired fails the test)."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (memory_mb * MB, memory_mb * MB))

    return subprocess.run([sys.executable, *arguments], cwd=cwd, env=environment_with_code(),
                          capture_output=True, text=True, timeout=seconds, preexec_fn=limit)


def one_error(result: subprocess.CompletedProcess) -> str:
    """The single `error:` line of a run that failed with exit code 1 and printed no traceback
    (progress bars aside)."""
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    [line] = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    return line
