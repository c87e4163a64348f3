"""The train and evaluate stages' inputs: a split's tokenized records joined with image features."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from captioner.core.errors import PipelineError
from captioner.core.files import read_json, read_jsonl, read_npy
from captioner.core.paths import FEATURES_RECORD


@dataclass
class Features:
    """Image feature vectors (float16 rows) and the row of each image id, read from `folder`."""

    vectors: np.ndarray
    row: dict[str, int]
    folder: Path

    def of(self, images: list[str]) -> np.ndarray:
        """Feature rows of the given images, as float32; every image must have features."""
        missing = [image for image in images if image not in self.row]
        if missing:
            raise PipelineError(f"{self.folder}: no features for {len(missing)} images, "
                                f"e.g. {missing[0]}")
        return self.vectors[[self.row[image] for image in images]].astype(np.float32)


@dataclass
class Split:
    """The records of one split whose images have features, one float32 feature row per record,
    and the ids of the split's images left out for having no features."""

    records: list[dict[str, Any]]
    features: np.ndarray
    without_features: list[str]


def load_features(folder: Path) -> Features:
    """Reads `features.npy` and `images.json` from the extract_features stage's output."""
    vectors = read_npy(folder / "features.npy")
    images = read_json(folder / "images.json")
    if len(images) != len(vectors):
        raise PipelineError(f"{folder}: {len(images)} image ids but {len(vectors)} feature rows")
    return Features(vectors, {image: index for index, image in enumerate(images)}, folder)


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
    return Split(kept, features.of([record["image"] for record in kept]), without)


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
