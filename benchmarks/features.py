"""Benchmark of the extract_features stage: its images/s next to the model's raw forward pass.

Runs `python -m stages.extract_features` in scratch folders on the first 200 and 7,000 images of the
Flickr8k mirror (the full one if present, else the 200-image sample, whose images are then reused
under new names), reads images/s from its metrics and peak memory from the child's rusage, and
times the same model on in-memory pixel batches. The stage/forward ratio is the figure (target
>= 0.9); peak memory should not grow with the image count. On a machine shared with other jobs
wall-clock rates swing with their load, so images per CPU second are printed too, and the stage's
cost per extra image (the difference of the two runs) is given without its start-up.

    python benchmarks/features.py [--archive ZIP] [--counts 200 7000]
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from captioner.core import quiet_start  # noqa: E402

quiet_start.install()

from captioner.core import params  # noqa: E402
from captioner.core.files import read_json  # noqa: E402
from captioner.core.image_files import is_image_name  # noqa: E402
from captioner.inputs.features import FeatureExtractor  # noqa: E402
from captioner.inputs.pixels import load_pixels  # noqa: E402

SHARED = ROOT.parent / "shared"
ARCHIVES = (SHARED / "flickr8k/Flickr8k_Dataset.zip", SHARED / "flickr8k-sample/Flickr8k_Dataset.zip")
FORWARD_BATCHES = 30


def unpack_images(archive: Path, folder: Path) -> list[Path]:
    """Extracts the archive's image files flat into `folder`; returns them sorted by name."""
    folder.mkdir(parents=True)
    with zipfile.ZipFile(archive) as images:
        for member in images.infolist():
            name = Path(member.filename).name
            if not member.is_dir() and is_image_name(member.filename):
                with images.open(member) as source, open(folder / name, "wb") as target:
                    shutil.copyfileobj(source, target)
    return sorted(folder.iterdir())


def prepare_run(folder: Path, images: list[Path], count: int, section: dict) -> None:
    """A scratch project with `count` image links (reusing images under new names if needed)."""
    image_dir = folder / "data/raw/images"
    image_dir.mkdir(parents=True)
    for index, image in zip(range(count), itertools.cycle(images)):
        copy = index // len(images)
        (image_dir / (image.name if copy == 0 else f"copy{copy}_{image.name}")).symlink_to(image)
    (folder / "params.yaml").write_text(yaml.safe_dump({"extract_features": section}))


@dataclasses.dataclass(frozen=True)
class StageRun:
    count: int
    images_per_s: float  # as the stage reports it: extraction only, model build excluded
    wall_s: float  # whole process, start-up included
    cpu_s: float  # user + system time of the whole process, all threads
    peak_mib: float
    features_mib: float  # the N x D output, which the stage holds in memory until it writes it


def run_stage(folder: Path, count: int) -> StageRun:
    """Runs the stage in `folder` as its own process and reads its metrics and rusage."""
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    log = folder / "stage.log"
    start = time.perf_counter()
    with open(log, "wb") as output:
        child = subprocess.Popen([sys.executable, "-m", "stages.extract_features"], cwd=folder,
                                 env=environment, stdout=output, stderr=output)
        _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"stage failed in {folder}:\n{log.read_text()[-2000:]}")
    metrics = read_json(folder / "metrics/speed/extract_features.json")
    features_mib = (folder / "data/features/features.npy").stat().st_size / 2**20
    return StageRun(count, metrics["images_per_s"], wall, usage.ru_utime + usage.ru_stime,
                    usage.ru_maxrss / 1024, features_mib)


def forward_throughput(settings: params.ExtractFeaturesParams,
                       images: list[Path]) -> tuple[float, float]:
    """(images/s, images per CPU second) of the stage's model alone on decoded in-memory pixels."""
    extractor = FeatureExtractor(settings.backbone, settings.weights, settings.batch_size)
    batch = np.stack([load_pixels(path) for path in
                      itertools.islice(itertools.cycle(images), settings.batch_size)])
    extractor.forward(batch)
    start, start_cpu = time.perf_counter(), time.process_time()
    for _ in range(FORWARD_BATCHES):
        extractor.forward(batch)
    count = FORWARD_BATCHES * settings.batch_size
    return count / (time.perf_counter() - start), count / (time.process_time() - start_cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archive", type=Path,
                        default=next((a for a in ARCHIVES if a.exists()), ARCHIVES[-1]))
    parser.add_argument("--counts", type=int, nargs=2, default=[200, 7000])
    arguments = parser.parse_args()
    settings = params.load(params.ExtractFeaturesParams, ROOT / "params.yaml")
    section = yaml.safe_load((ROOT / "params.yaml").read_text())["extract_features"]
    print(f"archive {arguments.archive}; {settings.backbone}, weights {settings.weights}, "
          f"batch {settings.batch_size}, decode threads {settings.decode_threads}, "
          f"{os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory(prefix="features-benchmark-") as scratch:
        images = unpack_images(arguments.archive, Path(scratch) / "images")
        print(f"{len(images)} distinct images unpacked")
        forward, forward_per_cpu = forward_throughput(settings, images)
        print(f"raw forward, in-memory batches: {forward:.1f} images/s, "
              f"{forward_per_cpu:.1f} images per CPU second")
        runs = []
        for count in arguments.counts:
            folder = Path(scratch) / f"run{count}"
            prepare_run(folder, images, count, section)
            runs.append(run_stage(folder, count))
            run = runs[-1]
            print(f"stage on {count} images: {run.images_per_s:.1f} images/s "
                  f"(ratio to forward {run.images_per_s / forward:.2f}); process: "
                  f"{run.wall_s:.1f} s wall, {run.cpu_s:.1f} s CPU, peak memory {run.peak_mib:.0f} MiB")
        small, large = runs
        extra = large.count - small.count
        # Differences between the two runs cancel start-up (imports, model build, first batch).
        marginal = extra / (large.wall_s - small.wall_s)
        marginal_per_cpu = extra / (large.cpu_s - small.cpu_s)
        print(f"stage per extra image ({small.count} -> {large.count}): {marginal:.1f} images/s "
              f"(ratio {marginal / forward:.2f}), {marginal_per_cpu:.1f} images per CPU second "
              f"(ratio {marginal_per_cpu / forward_per_cpu:.2f})")
        print(f"peak memory {small.peak_mib:.0f} MiB at {small.count} images, "
              f"{large.peak_mib:.0f} MiB at {large.count} (the output array itself: "
              f"{small.features_mib:.1f} and {large.features_mib:.1f} MiB)")
        again, again_per_cpu = forward_throughput(settings, images)
        print(f"raw forward again: {again:.1f} images/s, {again_per_cpu:.1f} images per CPU second")


if __name__ == "__main__":
    main()
