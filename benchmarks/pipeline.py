"""Benchmark of the whole pipeline: every stage under DVC on a local copy of the archives, its test
scores and speeds, and the seed's training scheme for comparison.

Clones the project's last commit into a work folder, points download.* at the local archives,
applies `-S section.key=value` overrides to params.yaml and runs `dvc repro STAGE` one stage at a
time, measuring its wall and CPU seconds and its peak memory (the largest resident set of any
process in its tree, from os.wait4; MB are 10**6 bytes). Then it reads the coco-caption scores and
the stages' own speed figures from their metrics, and measures what no stage does: the seed
scheme's training speed (benchmarks/seed_scheme.py), the feature CNN's raw forward pass
(benchmarks/features.py) and greedy decoding of the test images. Prints a table and, as its last
line, one JSON object. The training-speed figure is train_tokens_per_s / seed_scheme_tokens_per_s,
both counting real (non-padding) target tokens.

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

from benchmarks.features import forward_throughput  # noqa: E402
from benchmarks.seed_scheme import seed_scheme_tokens_per_s  # noqa: E402
from captioner import params  # noqa: E402
from captioner.artifacts import CAPTIONS, FEATURES, MODELS, load_features, load_model, load_split  # noqa: E402
from captioner.decoding import Decoder  # noqa: E402
from captioner.errors import PipelineError, run_stage  # noqa: E402
from captioner.files import read_json  # noqa: E402

ARCHIVES = ROOT.parent / "shared/flickr8k"
STAGES = ("download", "tokenize", "embed", "extract_features", "train", "evaluate")
SCORES = ("bleu1", "bleu2", "bleu3", "bleu4", "cider", "rouge_l")
SPEED_DIR = Path("metrics/speed")
# The stage metrics files that held the timing figures before metrics/speed/ did.
TIMINGS_BEFORE_SPEED_DIR = {"extract_features": Path("metrics/features.json"),
                            "evaluate": Path("metrics/eval.json")}
TRAIN_LOG = Path("metrics/train/plots/metrics/train/epoch_seconds.tsv")


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
    changed = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout
    if changed:
        print(f"note: uncommitted changes in {ROOT} are not benchmarked", file=sys.stderr)
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(project)], check=True)
    path = project / "params.yaml"
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    document["download"].update(images_url=str(archives / "Flickr8k_Dataset.zip"),
                                text_url=str(archives / "Flickr8k_text.zip"))
    for section, key, value in overrides:
        if section not in document:
            raise PipelineError(f"-S {section}.{key}: params.yaml has no section '{section}'")
        document[section][key] = value
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    for section_class in params.SECTIONS.values():
        params.load(section_class, path)
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=project, capture_output=True,
                          text=True, check=True).stdout.strip()


def repro_stage(project: Path, stage: str, log: Path) -> StageRun:
    """Runs `dvc repro STAGE` (the stages before it must be up to date) and measures it."""
    bin_dir = str(Path(sys.executable).parent)  # so that `python` in dvc.yaml is this interpreter
    environment = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    started = time.perf_counter()
    with open(log, "wb") as output:
        child = subprocess.Popen([sys.executable, "-m", "dvc", "repro", stage], cwd=project,
                                 env=environment, stdout=output, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    text = log.read_text(encoding="utf-8", errors="replace")
    if os.waitstatus_to_exitcode(status) != 0:
        raise PipelineError(f"{log}: dvc repro {stage} failed: {text.strip().splitlines()[-1:]}")
    ran = [line.split("'")[1] for line in text.splitlines() if line.startswith("Running stage '")]
    if ran != [stage]:
        raise PipelineError(f"{log}: dvc repro {stage} ran stages {ran}, expected only {stage}")
    return StageRun(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024 / 1e6)


def speed_figure(project: Path, stage: str, key: str) -> float | None:
    """A stage's own timing figure from metrics/speed/STAGE.json (or where it was written before)."""
    paths = [project / SPEED_DIR / f"{stage}.json"]
    if stage in TIMINGS_BEFORE_SPEED_DIR:
        paths.append(project / TIMINGS_BEFORE_SPEED_DIR[stage])
    for path in paths:
        if path.is_file() and key in (figures := read_json(path)):
            return float(figures[key])
    return None


def target_tokens(records: list[dict[str, Any]]) -> int:
    """Real target tokens of one pass over the captions: every token after the start token."""
    return sum(len(ids) - 1 for record in records for ids in record["tokens"])


def train_tokens_per_s(project: Path) -> float:
    """The train stage's figure, else real target tokens per epoch second from its DVCLive log
    (whose epoch times include the validation-loss pass)."""
    figure = speed_figure(project, "train", "train_tokens_per_s")
    if figure is not None:
        return figure
    if not (project / TRAIN_LOG).is_file():
        raise PipelineError(f"{project}: no train_tokens_per_s in {SPEED_DIR}/train.json and no "
                            f"epoch times in {TRAIN_LOG}")
    lines = (project / TRAIN_LOG).read_text(encoding="utf-8").splitlines()[1:]
    seconds = [float(line.split("\t")[-1]) for line in lines]
    return target_tokens(load_split("train", project / CAPTIONS)) * len(seconds) / sum(seconds)


def decode_images_per_s(project: Path, config: params.EvaluateParams, beam_size: int) -> float:
    """Test images captioned per second by the trained model, timed as the evaluate stage does."""
    trained = load_model(project / MODELS / "model.keras")
    images = [record["image"] for record in load_split("test", project / CAPTIONS)]
    features = load_features(project / FEATURES).of(images)
    decoder = Decoder.from_model(trained.model)
    started = time.perf_counter()
    decoder.captions(features, beam_size, config.max_length, config.length_penalty, config.batch_size)
    return len(images) / (time.perf_counter() - started)


def required_figure(project: Path, stage: str, key: str) -> float:
    """A stage's timing figure that the benchmark cannot measure itself."""
    figure = speed_figure(project, stage, key)
    if figure is None:
        raise PipelineError(f"{project}: no {key} in {SPEED_DIR}/{stage}.json")
    return figure


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
    test = load_split("test", project / CAPTIONS)
    evaluate_config = params.load(params.EvaluateParams, project / "params.yaml")
    decode = speed_figure(project, "evaluate", "decode_images_per_s")

    print("timing the seed scheme, the raw forward pass and greedy decoding", file=sys.stderr,
          flush=True)
    images = sorted((project / "data/raw/images").iterdir())
    raw_forward, _ = forward_throughput(
        params.load(params.ExtractFeaturesParams, project / "params.yaml"), images)
    return {
        **{name: evaluation[name] for name in SCORES},
        "test_images": len(test),
        "references_per_image": sorted({len(record["captions"]) for record in test}),
        "train_tokens_per_s": train_tokens_per_s(project),
        "seed_scheme_tokens_per_s": seed_scheme_tokens_per_s(project, seed_seconds),
        "seed_scheme_seconds": seed_seconds,
        "features_images_per_s": required_figure(project, "extract_features", "images_per_s"),
        "raw_forward_images_per_s": raw_forward,
        "beam_size": evaluate_config.beam_size,
        "decode_images_per_s": decode if decode is not None else decode_images_per_s(
            project, evaluate_config, evaluate_config.beam_size),
        "greedy_decode_images_per_s": decode_images_per_s(project, evaluate_config, 1),
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
          "each (coco-caption scorers)")
    print("  ".join(f"{name} {report[name]:.4f}" for name in SCORES))
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
    machine = report["machine"]
    print(f"\nmachine: {machine['cpu_count']} CPUs ({machine['cpu_model']}), load average "
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
    for name in ("Flickr8k_Dataset.zip", "Flickr8k_text.zip"):
        if not (archives / name).is_file():
            raise PipelineError(f"{archives / name}: archive not found")
    if arguments.workdir is not None and arguments.workdir.exists() and any(arguments.workdir.iterdir()):
        raise PipelineError(f"{arguments.workdir}: work folder is not empty")

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
