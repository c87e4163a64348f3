"""A caption source's entries gathered onto the images present, and the train, val and test splits.

An entry's image name matches the image id equal to it, or else the one id that ends with `/NAME`
(so a file name finds its image in any folder, and `train2014/x.jpg` under any parent folder); two
such ids are refused as ambiguous. Captions of absent images are skipped and counted.

A split the source does not give is carved from train: `count` images picked with NumPy's PCG64
generator seeded once, validation first, each from the sorted remaining training images.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from captioner.captions.formats.base import GIVEN_SPLIT, SPLITS, Skips, Source, where
from captioner.core.errors import PipelineError
from captioner.core.image_files import is_image_name


@dataclass(slots=True)
class CaptionedImage:
    """An image's kept captions, in file order, and the split its source gives (None: none)."""

    captions: list[str]
    split: str | None


@dataclass
class Collection:
    """Images present that the source names, in order of first mention, and those it left out
    because no split list names them."""

    images: dict[str, CaptionedImage] = field(default_factory=dict)
    unlisted: set[str] = field(default_factory=set)

    def without_captions(self, image_ids: Iterable[str]) -> list[str]:
        """The present images that got no caption (unlisted ones aside)."""
        return [image for image in image_ids if image not in self.unlisted
                and (image not in self.images or not self.images[image].captions)]


class ImageIndex:
    """Finds the image id an entry's image name stands for."""

    def __init__(self, image_ids: Iterable[str]) -> None:
        self.ids = set(image_ids)
        self.by_file_name: dict[str, list[str]] = {}
        for image in self.ids:
            self.by_file_name.setdefault(image.rpartition("/")[2], []).append(image)

    def find(self, name: str) -> list[str]:
        """The ids `name` matches: exactly, or as the end of a path after a '/'."""
        if name in self.ids:
            return [name]
        name = name.replace("\\", "/").removeprefix("./")
        candidates = self.by_file_name.get(name.rpartition("/")[2], [])
        return sorted(image for image in candidates if image == name or image.endswith(f"/{name}"))


def collect(source: Source, index: ImageIndex, skips: Skips) -> Collection:
    """Reads the source's entries onto the present images it names."""
    collection = Collection()
    for entry in source.entries:
        matches = index.find(entry.image)
        if len(matches) > 1:
            raise PipelineError(f"{where(entry.file, entry.place)}: image {entry.image!r} matches "
                                f"{len(matches)} images ({', '.join(matches[:3])}); name it by its path")
        if not matches:
            if entry.caption is not None:
                reason = "image_missing" if is_image_name(entry.image) else "bad_image_id"
                skips.skip(reason, entry.file, entry.place)
            continue
        image = matches[0]
        known = collection.images.setdefault(image, CaptionedImage([], entry.split))
        if entry.split is not None and entry.split != known.split:
            if known.split is not None:
                raise PipelineError(f"{where(entry.file, entry.place)}: image {image!r} is given split "
                                    f"'{entry.split}' here and '{known.split}' before")
            known.split = entry.split
        if entry.caption is None:
            continue
        if source.only_listed and known.split is None:
            collection.unlisted.add(image)
            skips.skip("unlisted_image", entry.file, entry.place)
        else:
            known.captions.append(entry.caption)
    return collection


def carve_count(wanted: float, pool_size: int, max_fraction: float) -> int:
    """Images a carved split gets: `wanted` as a fraction (< 1) of the pool, or as a count cut to
    `max_fraction` of the pool; at least one."""
    if wanted < 1:
        return max(1, _share(wanted, pool_size))
    return max(1, min(int(wanted), _share(max_fraction, pool_size)))


def _share(fraction: float, pool_size: int) -> int:
    # Rounded before flooring, so that 0.29 of 100 images is 29, not 28.
    return int(round(fraction * pool_size, 6))


def carve(pool: list[str], count: int, generator: np.random.Generator) -> list[str]:
    """`count` images drawn from the sorted pool, in sorted order."""
    ordered = sorted(pool)
    chosen = generator.choice(len(ordered), size=count, replace=False)
    return [ordered[i] for i in sorted(chosen)]


def make_splits(
    collection: Collection, wanted: dict[str, float], max_fraction: float, seed: int
) -> tuple[dict[str, list[str]], dict[str, str]]:
    """Train, val and test image ids, and where each of val and test came from.

    Images with captions go to the split their source gives; those without a split to train.
    `wanted` holds the val and test sizes (see `carve_count`) for splits the source leaves empty.
    """
    splits: dict[str, list[str]] = {name: [] for name in SPLITS}
    for image, captioned in collection.images.items():
        if captioned.captions:
            splits[captioned.split or "train"].append(image)
    pool_size = len(splits["train"])
    if not pool_size:
        raise PipelineError("no training images: no captioned image present is in the train split")
    generator = np.random.default_rng(seed)
    sources = {}
    for name in ("val", "test"):
        if splits[name]:
            sources[name] = GIVEN_SPLIT
            continue
        count = carve_count(wanted[name], pool_size, max_fraction)
        if count >= len(splits["train"]):
            raise PipelineError(f"carving {count} {name} images leaves no training images "
                                f"(only {len(splits['train'])} left; lower tokenize.{name}_images)")
        splits[name] = carve(splits["train"], count, generator)
        carved = set(splits[name])
        splits["train"] = [image for image in splits["train"] if image not in carved]
        sources[name] = f"{count} images carved from train (numpy PCG64, seed {seed})"
    return splits, sources
