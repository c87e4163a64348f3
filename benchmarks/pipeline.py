"""Benchmark of the whole pipeline: every stage under DVC on a local copy of the archives, its test
scores and speeds, and the seed's training scheme for comparison.

Clones the project's last commit into a work folder, points download.* at the local archives
(as ../shared/NAME/..., through a link beside the copy, so that data/records/download.json records the
same relative paths as a run in this repository would, never this machine's folders), applies
`-S section.key=value` overrides to params.yaml and runs `dvc repro --single-item STAGE` one stage at
a time, measuring its wall and CPU seconds and its peak memory (the largest resident set of any process in
its tree, from os.wait4; MB are 10**6 bytes). Then it reads the coco-caption scores and
the stages' own speed figures (metrics/speed/STAGE.json), and runs the copy's benchmarks/speeds.py
for what no stage measures: the seed scheme's training speed, the feature CNN's raw forward pass and
greedy decoding. Prints a table and, as its last line, one JSON object. The training-speed figure is
train_tokens_per_s / seed_scheme_tokens_per_s, both counting real (non-padding) target tokens.
Only committed code is benchmarked, the measuring scripts included.

This process never imports TensorFlow: a child inherits its parent's memory high-water mark at
exec, so every stage's peak would read at least this process's size.

    python benchmarks/pipeline.py [--archives ../shared/flickr8k] [--workdir DIR] [--seed-seconds 60]
                                  [-S train.epochs=20 -S train.rnn=lstm ...]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from captioner.core import params, paths  # noqa: E402
from captioner.core.errors import PipelineError, run_stage  # noqa: E402
from captioner.core.files import read_json, read_jsonl  # noqa: E402

ARCHIVES = ROOT.parent / "shared/flickr8k"
STAGES = ("download", "tokenize", "pretrained", "embed", "extract_features", "train", "evaluate",
          "publish")
SCORES = ("bleu_1", "bleu_2", "bleu_3", "bleu4", "meteor", "rouge_l", "cider")


@dataclasses.dataclass(frozen=True)
class StageRun:
    wall_s: float
    cpu_s: float  # user + system time of dvc and the stage, all threads
    peak_mb: float


def parse_override(text: str) -> tuple[str, str, Any]:
    """`section.key=value` -> (section, key, value parsed as YAML)."""
    name, equals, value = text.partition("=")
    section, dot, key = name.partition(".")
    if not (equals and dot and section and key):
        raise argparse.ArgumentTypeError(f"expected SECTION.KEY=VALUE, got {text!r}")
    return section, key, yaml.safe_load(value)


def prepare_project(project: Path, archives: Path, overrides: list[tuple[str, str, Any]]) -> str:
    """Clones the last commit into `project`, sets its params; returns the commit."""
    changed = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True,
                             text=True, check=True).stdout.splitlines()
    if changed:
        print(f"note: {len(changed)} uncommitted changes in {ROOT} are not benchmarked",
              file=sys.stderr)
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(project)], check=True)
    relative = Path("..", "shared", archives.name)
    (project / relative).parent.mkdir()
    (project / relative).symlink_to(archives, target_is_directory=True)
    path = project / "params.yaml"
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    document["download"].update(images_url=(relative / "Flickr8k_Dataset.zip").as_posix(),
                                text_url=(relative / "Flickr8k_text.zip").as_posix())
    for section, key, value in overrides:
        if section not in document:
            raise PipelineError(f"-S {section}.{key}: params.yaml has no section '{section}'")
        document[section][key] = value
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    for section_class in params.SECTIONS.values():
        params.load(section_class, path)
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=project, capture_output=True,
                          text=True, check=True).stdout.strip()


def dvc_environment() -> dict[str, str]:
    """This process's environment with this interpreter's bin folder first on PATH, so that
    `python` in dvc.yaml is this interpreter."""
    bin_dir = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}


def repro_stage(project: Path, stage: str, log: Path) -> StageRun:
    """Runs `dvc repro --single-item STAGE` (the stages before it must be up to date) and measures it."""
    started = time.perf_counter()
    with open(log, "wb") as output:
        child = subprocess.Popen([sys.executable, "-m", "dvc", "repro", "--single-item", stage],
                                 cwd=project, env=dvc_environment(), stdout=output,
                                 stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    text = log.read_text(encoding="utf-8", errors="replace")
    if os.waitstatus_to_exitcode(status) != 0:
        lines = text.strip().splitlines() or ["no output"]
        reason = next((line for line in lines if line.startswith("error: ")), lines[-1])
        raise PipelineError(f"{log}: dvc repro {stage} failed: {reason}")
    ran = [line.split("'")[1] for line in text.splitlines() if line.startswith("Running stage '")]
    if ran != [stage]:
        raise PipelineError(f"{log}: dvc repro {stage} ran stages {ran}, expected only {stage}")
    return StageRun(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024 / 1e6)


def stage_speed(project: Path, stage: str, key: str) -> float:
    """A timing figure the stage wrote into metrics/speed/STAGE.json."""
    path = project / paths.EVAL_SPEED.parent / f"{stage}.json"
    figures = read_json(path) if path.is_file() else {}
    if key not in figures:
        raise PipelineError(f"{path}: no {key} (the stage should have written it)")
    return float(figures[key])


def in_process_speeds(project: Path, seed_seconds: float) -> dict[str, float]:
    """The figures of benchmarks/speeds.py, run from `project` in its own process, so that the
    code that trained the model also decodes with it."""
    command = [sys.executable, "benchmarks/speeds.py", "--project", ".",
               "--seed-seconds", str(seed_seconds)]
    result = subprocess.run(command, cwd=project, stdout=subprocess.PIPE, text=True)
    if result.returncode != 0:
        raise PipelineError(f"benchmarks/speeds.py failed in {project} (exit code {result.returncode})")
    return json.loads(result.stdout.splitlines()[-1])


def cpu_model() -> str:
    """The processor's model name, as /proc/cpuinfo gives it where there is one."""
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.is_file() else []
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")),
                platform.processor())


def measure(project: Path, logs: Path, seed_seconds: float) -> dict[str, Any]:
    """Runs the stages in `project`, then reads and measures every figure of the report."""
    stages = {}
    for stage in STAGES:
        print(f"running stage {stage}", file=sys.stderr, flush=True)
        stages[stage] = dataclasses.asdict(repro_stage(project, stage, logs / f"{stage}.log"))
    evaluation = read_json(project / "metrics/eval.json")
    test = read_jsonl(project / paths.split_file("test"))
    print("timing the seed scheme, the raw forward pass and greedy decoding", file=sys.stderr,
          flush=True)
    return {
        **{name: evaluation[name] for name in SCORES},
        "retrieval_baseline": evaluation["retrieval_baseline"],
        "test_images": len(test),
        "references_per_image": sorted({len(record["captions"]) for record in test}),
        "train_tokens_per_s": stage_speed(project, "train", "train_tokens_per_s"),
        "features_images_per_s": stage_speed(project, "extract_features", "images_per_s"),
        "beam_size": params.load(params.EvaluateParams, project / paths.PARAMS_FILE).beam_size,
        "decode_images_per_s": stage_speed(project, "evaluate", "decode_images_per_s"),
        **in_process_speeds(project, seed_seconds),
        "seed_scheme_seconds": seed_seconds,
        "stages": stages,
        "total_wall_s": sum(run["wall_s"] for run in stages.values()),
    }


def print_table(report: dict[str, Any]) -> None:
    """The report as a table for people."""
    print(f"{'stage':<18}{'wall s':>10}{'CPU s':>10}{'peak MB':>10}")
    for stage, run in report["stages"].items():
        print(f"{stage:<18}{run['wall_s']:>10.1f}{run['cpu_s']:>10.1f}{run['peak_mb']:>10.0f}")
    print(f"{'all stages':<18}{report['total_wall_s']:>10.1f}")
    print(f"\ntest split: {report['test_images']} images, {report['references_per_image']} references "
          "each (coco-caption protocol)")
    print("  ".join(f"{name} {report[name]:.4f}" for name in SCORES))
    baseline = report["retrieval_baseline"]
    print(f"retrieval baseline (k = {baseline['k']}): "
          + "  ".join(f"{name} {baseline[name]:.4f}" for name in SCORES))
    speeds = [
        ("train, our scheme", report["train_tokens_per_s"], "target tokens/s"),
        ("train, seed scheme", report["seed_scheme_tokens_per_s"], "target tokens/s"),
        ("  ratio", report["training_speedup"], "x"),
        ("features, stage", report["features_images_per_s"], "images/s"),
        ("features, raw forward", report["raw_forward_images_per_s"], "images/s"),
        (f"decode, beam {report['beam_size']}", report["decode_images_per_s"], "images/s"),
        ("decode, greedy", report["greedy_decode_images_per_s"], "images/s"),
    ]
    print()
    for label, value, unit in speeds:
        print(f"{label:<24}{value:>10.1f} {unit}")
    print()
    print_machine(report["machine"])


def check_inputs(archives: Path, workdir: Path | None) -> None:
    """Raises PipelineError unless both Flickr8k archives are in `archives` and `workdir` is new or
    empty."""
    for name in ("Flickr8k_Dataset.zip", "Flickr8k_text.zip"):
        if not (archives / name).is_file():
            raise PipelineError(f"{archives / name}: archive not found")
    if workdir is not None and workdir.exists() and any(workdir.iterdir()):
        raise PipelineError(f"{workdir}: work folder is not empty")


def print_machine(machine: dict[str, Any]) -> None:
    """One line: the CPUs and the load average at the start and the end of the benchmark."""
    print(f"machine: {machine['cpu_count']} CPUs ({machine['cpu_model']}), load average "
          f"{machine['load_average_start']:.1f} at the start, {machine['load_average_end']:.1f} at the end")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archives", type=Path, default=ARCHIVES,
                        help="folder holding Flickr8k_Dataset.zip and Flickr8k_text.zip")
    parser.add_argument("--workdir", type=Path,
                        help="new or empty folder for the project copy and logs, kept afterwards "
                             "(default: a temporary folder, removed)")
    parser.add_argument("--seed-seconds", type=float, default=60.0,
                        help="timing budget of the seed scheme")
    parser.add_argument("-S", dest="overrides", action="append", default=[], type=parse_override,
                        metavar="SECTION.KEY=VALUE", help="set a param (repeatable)")
    arguments = parser.parse_args()
    archives = arguments.archives.resolve()
    check_inputs(archives, arguments.workdir)

    load_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="pipeline-benchmark-") as scratch:
        workdir = (arguments.workdir or Path(scratch)).resolve()
        project, logs = workdir / "project", workdir / "logs"
        logs.mkdir(parents=True)
        commit = prepare_project(project, archives, arguments.overrides)
        report = measure(project, logs, arguments.seed_seconds)
    report["training_speedup"] = report["train_tokens_per_s"] / report["seed_scheme_tokens_per_s"]
    report["machine"] = {"cpu_count": os.cpu_count(), "usable_cpus": len(os.sched_getaffinity(0)),
                         "cpu_model": cpu_model(), "platform": platform.platform(),
                         "load_average_start": load_start, "load_average_end": os.getloadavg()[0]}
    report.update(commit=commit, archives=str(archives),
                  overrides={f"{section}.{key}": value for section, key, value in arguments.overrides})
    print_table(report)
    print(json.dumps(report))


if __name__ == "__main__":
    run_stage(main)
