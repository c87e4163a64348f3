"""Runs the train stage as processes of a distributed test (tests/scripts/train_worker.py), waits for them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.helpers.network import free_ports
from tests.helpers.project import environment_with_code

# A single process's run must end within this; a hung collective op fails the test instead.
TIMEOUT_S = 240


def start_worker(project: Path, logical_cpus: int, weights: Path,
                 tf_config: str | None = None) -> subprocess.Popen:
    """`python -m tests.scripts.train_worker` in `project`, with this repository's code, in a
    process group of its own; without `tf_config`, TF_CONFIG is unset."""
    env = environment_with_code()
    env.pop("TF_CONFIG", None)
    if tf_config is not None:
        env["TF_CONFIG"] = tf_config
    return subprocess.Popen([sys.executable, "-m", "tests.scripts.train_worker", str(logical_cpus),
                             str(weights)], cwd=project, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def start_cluster(projects: list[Path], weights: list[Path]) -> list[subprocess.Popen]:
    """One multi-worker process per project (worker 0, the chief, first), on fresh local ports."""
    cluster = [f"127.0.0.1:{port}" for port in free_ports(len(projects))]
    return [start_worker(project, 1, weight, json.dumps(
                {"cluster": {"worker": cluster}, "task": {"type": "worker", "index": index}}))
            for index, (project, weight) in enumerate(zip(projects, weights, strict=True))]


def finish(process: subprocess.Popen) -> str:
    """The process's output once it exits with 0; past TIMEOUT_S its group is killed and the test
    fails."""
    try:
        output, _ = process.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        pytest.fail(f"no end within {TIMEOUT_S} s:\n{output}")
    assert process.returncode == 0, output
    return output


def weights_of(path: Path) -> list[np.ndarray]:
    """The weights a worker kept in its `.npz` file, in order."""
    with np.load(path) as archive:
        return [archive[name] for name in archive.files]
