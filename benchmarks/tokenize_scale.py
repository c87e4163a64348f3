"""Benchmark of the tokenize stage at scale: a COCO-sized collection and a million-row CSV.

Writes, in scratch projects, a synthetic COCO 2014 (`captions_train2014.json` and
`captions_val2014.json`: 82,783 + 40,504 images, 5 captions each, 616,435 in all, and an empty
placeholder file per image under `train2014/` and `val2014/`) and a `captions.csv` of 1,000,000 rows
(200,000 images, 5 captions each, no split column). Captions are 8 to 14 words drawn from 8,000
letter-only words with Zipf-like frequencies. Then runs `python -m stages.tokenize` in each as its
own process, under GNU time, with the default params (format set to coco or csv) and prints its
wall time, CPU time, peak memory and split sizes.

    python benchmarks/tokenize_scale.py [--scale 1.0] [--workdir DIR]

(Not benchmarks/tokenize.py: run as a script, that name would shadow the standard library's tokenize.)
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
COCO_IMAGES = {"train": 82_783, "val": 40_504}
CSV_IMAGES = 200_000
CAPTIONS_PER_IMAGE = 5
WORDS = 8_000
TIME = "/usr/bin/time"  # GNU time (Debian package `time`)


@dataclasses.dataclass
class StageRun:
    case: str
    images: int
    captions: int
    wall_s: float
    cpu_s: float
    peak_mb: float
    splits: dict[str, int]


def word_list(count: int) -> list[str]:
    """`count` distinct letter-only words (`clean` keeps only letters): a, b, ..., ba, bb, ..."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    words = []
    for index in range(count):
        word, index = "", index + 1
        while index:
            index, digit = divmod(index - 1, len(letters))
            word = letters[digit] + word
        words.append(word)
    return words


def captions(count: int, seed: int) -> Iterator[str]:
    """`count` captions of 8 to 14 words, frequent words far more frequent (1/rank)."""
    rng = np.random.default_rng(seed)
    words = np.array(word_list(WORDS))
    weights = 1 / np.arange(1, WORDS + 1)
    lengths = rng.integers(8, 15, size=count)
    drawn = rng.choice(WORDS, size=int(lengths.sum()), p=weights / weights.sum())
    start = 0
    for length in lengths:
        yield " ".join(words[drawn[start:start + length]]).capitalize() + "."
        start += length


def touch(folder: Path, names: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).touch()


def write_coco(project: Path, scale: float) -> tuple[int, int]:
    """The two annotation files and their placeholder images; returns (images, captions)."""
    text = project / "data/raw/text"
    text.mkdir(parents=True)
    total_images = total_captions = 0
    for seed, (split, full_count) in enumerate(COCO_IMAGES.items()):
        count = int(full_count * scale)
        names = [f"COCO_{split}2014_{index:012d}.jpg" for index in range(count)]
        touch(project / f"data/raw/images/{split}2014", names)
        texts = captions(count * CAPTIONS_PER_IMAGE, seed)
        document = {
            "info": {"description": "synthetic COCO-sized captions"}, "licenses": [],
            "images": [{"id": index, "file_name": name, "width": 640, "height": 480}
                       for index, name in enumerate(names)],
            "annotations": [{"id": number, "image_id": number // CAPTIONS_PER_IMAGE, "caption": caption}
                            for number, caption in enumerate(texts)],
        }
        (text / f"captions_{split}2014.json").write_text(json.dumps(document), encoding="utf-8")
        total_images += count
        total_captions += count * CAPTIONS_PER_IMAGE
    return total_images, total_captions


def write_csv(project: Path, scale: float) -> tuple[int, int]:
    """`captions.csv` and its placeholder images; returns (images, captions)."""
    count = int(CSV_IMAGES * scale)
    names = [f"{index // 1000:03d}/{index:07d}.jpg" for index in range(count)]
    for folder in sorted({name.split("/")[0] for name in names}):
        touch(project / "data/raw/images" / folder,
              [name.split("/")[1] for name in names if name.startswith(f"{folder}/")])
    text = project / "data/raw/text"
    text.mkdir(parents=True)
    with open(text / "captions.csv", "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "caption"])
        texts = captions(count * CAPTIONS_PER_IMAGE, seed=2)
        writer.writerows((names[number // CAPTIONS_PER_IMAGE], caption)
                         for number, caption in enumerate(texts))
    return count, count * CAPTIONS_PER_IMAGE


def run_stage(project: Path, case: str, images: int, captions_count: int) -> StageRun:
    """Runs the stage in `project` under GNU time and reads its wall and CPU time, peak memory and
    metrics. (A child's own rusage would not do: Linux hands a forked child its parent's peak RSS.)"""
    section = yaml.safe_load((ROOT / "params.yaml").read_text())["tokenize"]
    (project / "params.yaml").write_text(yaml.safe_dump({"tokenize": {**section, "format": case}}))
    log, timing = project / "stage.log", project / "time.txt"
    with open(log, "wb") as output:
        finished = subprocess.run([TIME, "-o", str(timing), "-f", "%e %U %S %M", sys.executable, "-m",
                                   "stages.tokenize"], cwd=project, stdout=output, stderr=output,
                                  env={**os.environ, "PYTHONPATH": str(ROOT)}, check=False)
    if finished.returncode != 0:
        raise SystemExit(f"tokenize failed in {project}:\n{log.read_text()[-2000:]}")
    wall, user, system, peak_kb = (float(value) for value in timing.read_text().split()[-4:])
    splits = json.loads((project / "data/records/tokenize.json").read_text())["splits"]
    return StageRun(case, images, captions_count, wall, user + system, peak_kb / 1024,
                    {name: split["images"] for name, split in splits.items()})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the full sizes")
    parser.add_argument("--workdir", type=Path, help="keep the scratch projects here")
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tokenize-benchmark-") as scratch:
        workdir = arguments.workdir or Path(scratch)
        runs = []
        for case, write in (("coco", write_coco), ("csv", write_csv)):
            project = workdir / case
            started = time.perf_counter()
            images, captions_count = write(project, arguments.scale)
            print(f"{case}: wrote {images:,} images and {captions_count:,} captions in "
                  f"{time.perf_counter() - started:.0f} s", flush=True)
            runs.append(run_stage(project, case, images, captions_count))
    print(f"\n{'case':6} {'images':>9} {'captions':>10} {'wall s':>7} {'CPU s':>7} {'peak MB':>8}  splits")
    for run in runs:
        print(f"{run.case:6} {run.images:>9,} {run.captions:>10,} {run.wall_s:>7.1f} {run.cpu_s:>7.1f} "
              f"{run.peak_mb:>8.0f}  {run.splits}")
    print(json.dumps([dataclasses.asdict(run) for run in runs]))


if __name__ == "__main__":
    main()
