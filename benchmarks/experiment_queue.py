"""Benchmark of parallel experiments: the wall time of `dvc queue start -j N` running the same
number of train-only experiments (different train.seed values) one at a time and N at a time.

Clones the project's last commit into a work folder with benchmarks/pipeline.py's prepare_project
(archives from the 200-image sample mirror by default, `-S section.key=value` overrides applied),
runs `dvc repro` once and commits the result, so that every queued experiment finds the data stages
cached and reruns train and evaluate only. Then, for each --jobs value, it queues --experiments
experiments with seeds not used before (a seed already run would be restored from the run-cache),
starts `dvc queue start -j N`, which returns at once, and polls `dvc queue status` until every one
of them has ended; the time from the start to the last end is the figure. Between rounds it waits
for the queue's workers to exit (they linger up to 10 s when the queue empties, and would take the
next round's experiments before its clock starts). Prints a table and, as its last line, one JSON
object. Only committed code is benchmarked.

    python benchmarks/experiment_queue.py [--archives ../shared/flickr8k-sample] [--workdir DIR]
                               [--experiments 4] [--jobs 1 --jobs 2] [-S train.epochs=3 ...]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# This file's folder leaves the import path: the file's name would hide the standard library's queue.
ROOT = Path(__file__).resolve().parents[1]
sys.path[0] = str(ROOT)

from benchmarks.pipeline import (  # noqa: E402
    check_inputs,
    cpu_model,
    dvc_environment,
    parse_override,
    prepare_project,
    print_machine,
)
from captioner.core.errors import PipelineError, run_stage  # noqa: E402

SAMPLE = ROOT.parent / "shared/flickr8k-sample"
ENDED = ("Success", "Failed")
POLL_SECONDS = 2.0
WORKER_EXIT_SECONDS = 60.0


def run_dvc(project: Path, *arguments: str, log: Path | None = None) -> str:
    """Runs `dvc ARGUMENTS` in the project; its output, appended to `log` when given."""
    result = subprocess.run([sys.executable, "-m", "dvc", *arguments], cwd=project,
                            env=dvc_environment(), capture_output=True, text=True)
    if log is not None:
        with open(log, "a", encoding="utf-8") as handle:
            handle.write(f"$ dvc {' '.join(arguments)}\n{result.stdout}{result.stderr}")
    if result.returncode != 0:
        lines = (result.stdout + result.stderr).strip().splitlines() or ["no output"]
        raise PipelineError(f"dvc {' '.join(arguments)} failed: {lines[-1]}")
    return result.stdout


def commit_all(project: Path, message: str) -> None:
    """Commits everything git does not ignore, as a benchmark user."""
    subprocess.run(["git", "add", "-A"], cwd=project, check=True)
    subprocess.run(["git", "-c", "user.name=benchmark", "-c", "user.email=benchmark@localhost",
                    "commit", "-qm", message], cwd=project, check=True)


def queue_states(project: Path) -> dict[str, str]:
    """Each named task in `dvc queue status` -> its state (Queued, Running, Success, Failed)."""
    states = {}
    for line in run_dvc(project, "queue", "status").splitlines()[1:]:
        cells = line.split()
        if not cells or line.startswith("Worker status:"):
            continue
        if len(cells) >= 4 and cells[-1] in ("Queued", "Running", *ENDED):
            states[cells[1]] = cells[-1]
    return states


def queue_workers(project: Path) -> list[int]:
    """Process ids of this project's queue workers (`dvc exp queue-worker`, run in the project)."""
    workers = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().split(b"\0")
            folder = Path(os.readlink(entry / "cwd"))
        except OSError:  # the process ended, or is not ours to read
            continue
        if b"queue-worker" in command and folder.is_relative_to(project):
            workers.append(int(entry.name))
    return workers


def wait_for_workers_to_exit(project: Path) -> None:
    deadline = time.monotonic() + WORKER_EXIT_SECONDS
    while queue_workers(project):
        if time.monotonic() > deadline:
            raise PipelineError(f"{project}: queue workers still running after "
                                f"{WORKER_EXIT_SECONDS:.0f} s (stop them with `dvc queue stop`)")
        time.sleep(POLL_SECONDS)


def run_round(project: Path, jobs: int, seeds: list[int], log: Path) -> dict[str, Any]:
    """Queues one experiment per seed, runs them with `dvc queue start -j JOBS`, and times it."""
    names = [f"seed-{seed}" for seed in seeds]
    for seed, name in zip(seeds, names, strict=True):
        run_dvc(project, "exp", "run", "--queue", "-n", name, "-S", f"train.seed={seed}", log=log)
    states = queue_states(project)
    if any(states.get(name) != "Queued" for name in names):
        raise PipelineError(f"expected {names} queued before the start, found {states}")
    started = time.perf_counter()
    run_dvc(project, "queue", "start", "-j", str(jobs), log=log)
    while not all(states.get(name) in ENDED for name in names):
        time.sleep(POLL_SECONDS)
        states = queue_states(project)
    wall = time.perf_counter() - started
    run_dvc(project, "queue", "status", log=log)
    wait_for_workers_to_exit(project)
    failed = [name for name in names if states[name] != "Success"]
    for name in failed:
        run_dvc(project, "queue", "logs", name, log=log)
    return {"jobs": jobs, "experiments": len(names), "wall_s": wall,
            "succeeded": len(names) - len(failed), "failed": failed}


def print_table(report: dict[str, Any]) -> None:
    """The report as a table for people."""
    print(f"{'dvc queue start':<18}{'experiments':>12}{'succeeded':>11}{'wall s':>10}{'s each':>9}")
    for row in report["rounds"]:
        print(f"{'-j ' + str(row['jobs']):<18}{row['experiments']:>12}{row['succeeded']:>11}"
              f"{row['wall_s']:>10.1f}{row['wall_s'] / row['experiments']:>9.1f}")
    print(f"\nfirst run of the whole pipeline: {report['baseline_repro_s']:.1f} s")
    print_machine(report["machine"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archives", type=Path, default=SAMPLE,
                        help="folder holding Flickr8k_Dataset.zip and Flickr8k_text.zip")
    parser.add_argument("--workdir", type=Path,
                        help="new or empty folder for the project copy and logs, kept afterwards "
                             "(default: a temporary folder, removed)")
    parser.add_argument("--experiments", type=int, default=4, help="experiments per round")
    parser.add_argument("--jobs", type=int, action="append",
                        help="`dvc queue start -j` of a round (repeatable; default: 1 and 2)")
    parser.add_argument("-S", dest="overrides", action="append", default=[], type=parse_override,
                        metavar="SECTION.KEY=VALUE", help="set a param (repeatable)")
    arguments = parser.parse_args()
    jobs = arguments.jobs or [1, 2]
    archives = arguments.archives.resolve()
    check_inputs(archives, arguments.workdir)

    load_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="queue-benchmark-") as scratch:
        workdir = (arguments.workdir or Path(scratch)).resolve()
        project, log = workdir / "project", workdir / "queue.log"
        workdir.mkdir(parents=True, exist_ok=True)
        commit = prepare_project(project, archives, arguments.overrides)
        print("running the pipeline once", file=sys.stderr, flush=True)
        started = time.perf_counter()
        run_dvc(project, "repro", log=log)
        baseline = time.perf_counter() - started
        commit_all(project, "baseline: the pipeline run once")
        rounds = []
        for number, round_jobs in enumerate(jobs):
            seeds = [1000 + number * arguments.experiments + index
                     for index in range(arguments.experiments)]
            print(f"dvc queue start -j {round_jobs}: {len(seeds)} experiments", file=sys.stderr,
                  flush=True)
            rounds.append(run_round(project, round_jobs, seeds, log))
    report = {
        "rounds": rounds, "baseline_repro_s": baseline, "commit": commit,
        "archives": str(archives),
        "overrides": {f"{section}.{key}": value for section, key, value in arguments.overrides},
        "machine": {"cpu_count": os.cpu_count(), "usable_cpus": len(os.sched_getaffinity(0)),
                    "cpu_model": cpu_model(), "platform": platform.platform(),
                    "load_average_start": load_start, "load_average_end": os.getloadavg()[0]},
    }
    print_table(report)
    print(json.dumps(report))


if __name__ == "__main__":
    run_stage(main)
