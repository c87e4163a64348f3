"""The train and evaluate stages' inputs: a split's tokenized records joined with image features:
the pooled vectors, in memory, and (when extract_features kept them) the regions, memory-mapped."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from captioner.core.errors import PipelineError
from captioner.core.files import read_json, read_jsonl, read_npy
from captioner.core.paths import FEATURES_RECORD, MIRRORED_PREFIX

GRID_FILE = "grid.npy"
# The files beside features.npy that extract_features writes only when asked, and what asks.
OPTIONAL_FILES = {GRID_FILE: "the regions the attention decoder reads (set extract_features.grid: "
                             "true)",
                  MIRRORED_PREFIX + "features.npy": "the mirrored photos' features that "
                  "train.mirrored_views reads (set extract_features.mirrored: true)",
                  MIRRORED_PREFIX + GRID_FILE: "the mirrored photos' regions that an attention "
                  "decoder with train.mirrored_views reads (set extract_features.grid and "
                  "extract_features.mirrored: true)"}


class Regions:
    """Some images' regions, float32 (images, regions, D), read on demand from a memory-mapped
    grid: indexing (an int, a slice or an index array) reads only the rows it selects."""

    def __init__(self, grid: np.ndarray, rows: np.ndarray) -> None:
        self.grid, self.rows = grid, rows
        self.shape = (len(rows), *grid.shape[1:])

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int | slice | np.ndarray) -> np.ndarray:
        return np.asarray(self.grid[self.rows[index]], dtype=np.float32)


@dataclass
class Features:
    """Image feature vectors (float16 rows), the row of each image id, and the OPTIONAL_FILES the
    folder has (the grids memory-mapped, one row per vector), read from `folder`."""

    vectors: np.ndarray
    row: dict[str, int]
    folder: Path
    optional: dict[str, np.ndarray]

    def rows(self, images: list[str]) -> np.ndarray:
        """The rows of the given images; every image must have features."""
        missing = [image for image in images if image not in self.row]
        if missing:
            raise PipelineError(f"{self.folder}: no features for {len(missing)} images, "
                                f"e.g. {missing[0]}")
        return np.array([self.row[image] for image in images], dtype=np.int64)

    def of(self, images: list[str]) -> np.ndarray:
        """Feature rows of the given images, as float32; every image must have features."""
        return self.vectors[self.rows(images)].astype(np.float32)

    def inputs_of(self, images: list[str], regions: bool, mirrored: bool = False) -> np.ndarray | Regions:
        """What a captioner reads of the given images: their regions or pooled vectors, of the
        photos or of their mirror images; refused when the folder lacks them."""
        if not (regions or mirrored):
            return self.of(images)
        name = (MIRRORED_PREFIX if mirrored else "") + (GRID_FILE if regions else "features.npy")
        if name not in self.optional:
            raise PipelineError(f"{self.folder}: no {name}, {OPTIONAL_FILES[name]}")
        array, rows = self.optional[name], self.rows(images)
        return Regions(array, rows) if regions else array[rows].astype(np.float32)


@dataclass
class Split:
    """The records of one split whose images have features, one float32 feature row per record,
    and the ids of the split's images left out for having no features; `source` gives the
    records' other inputs (regions, mirrored photos)."""

    records: list[dict[str, Any]]
    features: np.ndarray
    without_features: list[str]
    source: Features | None = None

    def image_inputs(self, regions: bool, mirrored: bool = False) -> np.ndarray | Regions:
        """What a captioner reads of each record's image: its regions or its pooled vector (of
        the mirrored photo with `mirrored`)."""
        if not (regions or mirrored):
            return self.features
        if self.source is None:
            raise ValueError("a split made without its features folder has only pooled vectors")
        return self.source.inputs_of([record["image"] for record in self.records], regions, mirrored)


def load_features(folder: Path) -> Features:
    """Reads `features.npy`, `images.json` and the OPTIONAL_FILES present from the extract_features
    stage's output, checking that every array has a row per image."""
    vectors = read_npy(folder / "features.npy")
    images = read_json(folder / "images.json")
    if len(images) != len(vectors):
        raise PipelineError(f"{folder}: {len(images)} image ids but {len(vectors)} feature rows")
    optional = {name: np.load(folder / name, mmap_mode="r" if name.endswith(GRID_FILE) else None,
                              allow_pickle=False)
                for name in OPTIONAL_FILES if (folder / name).is_file()}
    for name, array in optional.items():
        expected = (len(vectors), array.shape[1], vectors.shape[1]) if array.ndim == 3 else vectors.shape
        if array.shape != expected or array.ndim != (3 if name.endswith(GRID_FILE) else 2):
            raise PipelineError(f"{folder / name}: shape {array.shape} does not fit "
                                f"features.npy's {vectors.shape}")
    return Features(vectors, {image: index for index, image in enumerate(images)}, folder, optional)


def load_split(path: Path, features: Features) -> Split:
    """The tokenize stage's records of one split (image, raw captions, token ids) with features.

    Images the extract_features stage could not decode have no features: their records are left
    out (the stage already checked they are few, see extract_features.max_bad_fraction).
    """
    records = read_jsonl(path)
    kept = [record for record in records if record["image"] in features.row]
    without = [record["image"] for record in records if record["image"] not in features.row]
    if not kept:
        raise PipelineError(f"{path}: none of its {len(records)} images has "
                            f"features in {features.folder} (see {FEATURES_RECORD})")
    return Split(kept, features.of([record["image"] for record in kept]), without, features)


def warn_without_features(splits: dict[str, Split], features_folder: Path) -> None:
    """One warning line on stderr when any split left images out for having no features in
    `features_folder`."""
    counts = {name: len(split.without_features) for name, split in splits.items()
              if split.without_features}
    if counts:
        first = next(split.without_features[0] for split in splits.values() if split.without_features)
        listed = ", ".join(f"{count} {name}" for name, count in counts.items())
        print(f"warning: {features_folder}: no features for {listed} images (undecodable, e.g. {first}; "
              f"see {FEATURES_RECORD}): their captions are left out", file=sys.stderr)
