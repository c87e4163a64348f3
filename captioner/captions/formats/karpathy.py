"""Karpathy's split files (`dataset_coco.json`, `dataset_flickr8k.json`, `dataset_flickr30k.json`;
any name when given alone).

Each `images[]` entry has `filename`, an optional `filepath` folder, a `split` (train, restval,
val or test; restval joins train) and `sentences[].raw`, the captions.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from captioner.captions.formats.base import (
    CaptionFile,
    Entry,
    Skips,
    Source,
    TextFolder,
    first_missing,
    json_items,
    only_file,
    split_named,
    text_field,
)
from captioner.core.text import has_words

NAME = "karpathy"
PATTERN = "dataset_*.json"
SPLIT_ALIASES = {"restval": "train"}


def find_files(text_dir: Path) -> list[Path]:
    """The `dataset_*.json` files."""
    return sorted(text_dir.glob(PATTERN))


def read(files: list[CaptionFile], text: TextFolder, skips: Skips) -> Source:
    """The split file's captions, each with its image's split."""
    return Source(_entries(only_file(files, text, PATTERN), skips))


def _entries(path: CaptionFile, skips: Skips) -> Iterator[Entry]:
    for index, image in json_items(path, "images.item"):
        place = f"images[{index}]"
        filename, split = text_field(image, "filename"), text_field(image, "split")
        if missing := first_missing({"filename": filename, "split": split}):
            skips.skip("missing_key", path, f"{place}.{missing}")
            continue
        folder = text_field(image, "filepath")
        name = f"{folder.strip('/')}/{filename}" if folder else filename
        split = split_named(split, path, f"{place}.split", SPLIT_ALIASES)
        sentences = image.get("sentences")
        if not isinstance(sentences, list):
            skips.skip("missing_key", path, f"{place}.sentences")
            continue
        yield Entry(name, None, split, path, place)
        for number, sentence in enumerate(sentences):
            caption_place = f"{place}.sentences[{number}].raw"
            caption = text_field(sentence, "raw")
            if caption is None or not has_words(caption):
                skips.skip("missing_key" if caption is None else "empty_caption", path, caption_place)
            else:
                yield Entry(name, caption.strip(), split, path, caption_place)
