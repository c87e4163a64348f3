"""Every caption format through the whole pipeline under `dvc exp run`, on one project.

One drawn collection of 50 images in a COCO-like user folder (`train2014/`, `val2014/`) and the same
images in a `.tar.gz`; each format gets its own captions file, written here. The runs share one
project and so DVC's cache: a format's run reruns download, tokenize and what follows, and skips
extract_features when the images it brings are those of an earlier run. Each run is complete on its
own (all three sources are set), so the tests pass in any order or alone.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from captioner.core.files import read_json, read_jsonl
from tests.helpers.archives import fingerprint, make_folder_tar
from tests.helpers.datasets import (
    write_coco_zip,
    write_csv,
    write_flickr30k,
    write_karpathy,
    write_pictures,
)
from tests.helpers.http_server import serve_directory
from tests.helpers.project import copy_project, dvc, run

pytestmark = pytest.mark.slow  # every test here runs real DVC commands

TRAIN_FOLDER_IMAGES, VAL_FOLDER_IMAGES = 35, 15
CAPTIONS_PER_IMAGE = 5
# Tiny models: each run takes seconds; tokenize keeps its defaults, as a user's would be.
TINY_PARAMS = {
    "embed": {"dim": 8, "epoch": 1},
    "train": {"units": 16, "epochs": 1, "val_bleu_images": 4, "self_critical_epochs": 0,
              "ensemble": 1},
    "evaluate": {"report_images": 1},
}
STAGE_OUTPUTS = ("data/raw/images", "data/raw/text", "data/captions/vocab.json",
                 "data/embeddings/matrix.npy", "data/features/features.npy", "models/model.keras",
                 "data/evaluation/captions.jsonl", "data/evaluation/report.html", "metrics/eval.json")


def coco_id(index: int) -> str:
    """Image `index`'s id: COCO's folder and file name, the first ones in train2014/."""
    folder = "train2014" if index < TRAIN_FOLDER_IMAGES else "val2014"
    return f"{folder}/COCO_{folder}_{index:012d}.jpg"


IDS = [coco_id(index) for index in range(TRAIN_FOLDER_IMAGES + VAL_FOLDER_IMAGES)]
TRAIN_FOLDER, VAL_FOLDER = IDS[:TRAIN_FOLDER_IMAGES], IDS[TRAIN_FOLDER_IMAGES:]
# Karpathy's COCO split: train2014/ trains; val2014/ gives restval (joins train), val and test.
KARPATHY_SPLITS = {**dict.fromkeys(TRAIN_FOLDER, "train"), **dict.fromkeys(VAL_FOLDER[:5], "restval"),
                   **dict.fromkeys(VAL_FOLDER[5:10], "val"), **dict.fromkeys(VAL_FOLDER[10:], "test")}
COCO_SPLITS = {**dict.fromkeys(TRAIN_FOLDER, "train"), **dict.fromkeys(VAL_FOLDER, "val")}
# Every other training image's split cell left empty: it joins train all the same.
CSV_SPLITS = {**{image: "train" if number % 2 else "" for number, image in enumerate(TRAIN_FOLDER)},
              **dict.fromkeys(VAL_FOLDER[:7], "val"), **dict.fromkeys(VAL_FOLDER[7:], "test")}


@dataclass(frozen=True)
class Sources:
    """The user's image folder, the same images in a .tar.gz, and each format's captions source."""

    folder: Path
    tarball: Path
    captions: dict[str, str]


@dataclass(frozen=True)
class Case:
    """One run: its format and sources, and the splits it must give (None: carved, count only)."""

    format: str
    images: str  # "folder" or "tarball"
    captions: str  # the key of Sources.captions
    given: dict[str, set[str] | None]
    sizes: dict[str, int]
    chosen_format: str


def given_split(splits: dict[str, str], *names: str) -> set[str]:
    return {image for image, split in splits.items() if split in names}


# Carved with the default tokenize params: 10% of the training images each for val and test.
CASES = [
    Case("flickr30k", "tarball", "flickr30k", {"train": None, "val": None, "test": None},
         {"train": 40, "val": 5, "test": 5}, "flickr30k"),
    Case("karpathy", "folder", "karpathy",
         {"train": given_split(KARPATHY_SPLITS, "train", "restval"),
          "val": given_split(KARPATHY_SPLITS, "val"), "test": given_split(KARPATHY_SPLITS, "test")},
         {"train": 40, "val": 5, "test": 5}, "karpathy"),
    Case("coco", "tarball", "coco", {"train": None, "val": set(VAL_FOLDER), "test": None},
         {"train": 32, "val": 15, "test": 3}, "coco"),
    Case("auto", "tarball", "coco", {"train": None, "val": set(VAL_FOLDER), "test": None},
         {"train": 32, "val": 15, "test": 3}, "coco"),
    Case("csv", "folder", "csv",
         {"train": set(TRAIN_FOLDER), "val": given_split(CSV_SPLITS, "val"),
          "test": given_split(CSV_SPLITS, "test")},
         {"train": 35, "val": 7, "test": 8}, "csv"),
]


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> Sources:
    root = tmp_path_factory.mktemp("sources")
    captions = write_pictures(root / "coco", IDS)
    karpathy = write_karpathy(root / "served", captions, KARPATHY_SPLITS)
    by_file_name = {image.rpartition("/")[2]: texts for image, texts in captions.items()}
    with serve_directory(karpathy.parent) as server:
        tarball = make_folder_tar(root / "coco-images.tar.gz", root / "coco", top="coco-images")
        yield Sources(root / "coco", tarball, {
            "flickr30k": str(write_flickr30k(root / "flickr30k", by_file_name)),
            "karpathy": server.url_for(karpathy.name),
            "coco": str(write_coco_zip(root / "coco-text", captions, COCO_SPLITS)),
            "csv": str(write_csv(root / "csv", captions, CSV_SPLITS)),
        })


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    return copy_project(tmp_path_factory.mktemp("project"), TINY_PARAMS)


def split_images(project: Path, split: str) -> list[str]:
    return [row["image"] for row in read_jsonl(project / f"data/captions/{split}.jsonl")]


# Run by default: coco (a tarball, carving validation) and auto detecting it; the others are opt-in
# (--run-long) to keep the default run near ten minutes: tests/test_formats.py reads every format.
OPT_IN_FORMATS = ("flickr30k", "karpathy", "csv")


@pytest.mark.parametrize(
    "case", [pytest.param(case, marks=pytest.mark.long) if case.format in OPT_IN_FORMATS else case
             for case in CASES], ids=[case.format for case in CASES])
def test_format_runs_the_whole_pipeline(project, sources, case):
    folder_before = fingerprint(sources.folder)
    images = sources.folder if case.images == "folder" else sources.tarball

    output = dvc("exp", "run", "-S", f"tokenize.format={case.format}",
                 "-S", f"download.images_url={images}",
                 "-S", f"download.text_url={sources.captions[case.captions]}", cwd=project).stdout

    assert [path for path in STAGE_OUTPUTS if not (project / path).exists()] == []
    data = read_json(project / "data/records/tokenize.json")
    assert data["format"] == case.chosen_format
    assert data["splits"] == {split: {"images": size, "captions": CAPTIONS_PER_IMAGE * size}
                              for split, size in case.sizes.items()}
    splits = {split: split_images(project, split) for split in case.sizes}
    assert sorted(image for images in splits.values() for image in images) == IDS
    for split, expected in case.given.items():
        if expected is not None:
            assert set(splits[split]) == expected, split
    if case.format == "auto":
        assert f"tokenize: format auto chose {case.chosen_format}" in output
    evaluated = read_jsonl(project / "data/evaluation/captions.jsonl")
    assert sorted(row["image"] for row in evaluated) == sorted(splits["test"])
    image = f"data/raw/images/{evaluated[0]['image']}"
    predicted = run([sys.executable, "-m", "captioner", "predict", image], project).stdout
    assert predicted == f"{image}\t{evaluated[0]['caption']}\n"
    assert fingerprint(sources.folder) == folder_before
