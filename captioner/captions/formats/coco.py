"""COCO: one or more `captions_*.json` files (`images[].id/file_name`, `annotations[].image_id/caption`).

A file whose name holds `train` gives the train split, `val` the val split; test is carved. A single
file given alone whose name holds neither (`annotations.json`) gives train, val and test carved.
Each file is streamed twice: once for its images, once for its annotations.
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
    id_field,
    json_items,
    text_field,
)
from captioner.core.errors import PipelineError
from captioner.core.text import has_words

NAME = "coco"
PATTERN = "captions_*.json"


def find_files(text_dir: Path) -> list[Path]:
    """The `captions_*.json` files."""
    return sorted(text_dir.glob(PATTERN))


def read(files: list[CaptionFile], text: TextFolder, skips: Skips) -> Source:
    """Every annotation file's captions, with the split its file name gives."""
    splits = {file: split_of_file(file, alone=text.single_file is not None) for file in files}
    return Source(entry for file in files for entry in _entries(file, splits[file], skips))


def split_of_file(file: CaptionFile, alone: bool) -> str:
    """`train` or `val`, from the file name; `train` for a file given alone that names neither."""
    stem = file.path.stem.lower()
    if "train" in stem or alone and "val" not in stem:
        return "train"
    if "val" in stem:
        return "val"
    raise PipelineError(f"{file}: cannot tell its split from its name (expected 'train' or 'val' in it)")


def _entries(path: CaptionFile, split: str, skips: Skips) -> Iterator[Entry]:
    """An entry without caption per image (so images with no annotation are known), then the captions."""
    file_names: dict[int | str, str] = {}
    for index, image in json_items(path, "images.item"):
        place = f"images[{index}]"
        fields = {"id": id_field(image, "id"), "file_name": text_field(image, "file_name")}
        if missing := first_missing(fields):
            skips.skip("missing_key", path, f"{place}.{missing}")
            continue
        file_names[fields["id"]] = fields["file_name"]
        yield Entry(fields["file_name"], None, split, path, place)
    for index, annotation in json_items(path, "annotations.item"):
        place = f"annotations[{index}]"
        image_id, caption = id_field(annotation, "image_id"), text_field(annotation, "caption")
        if missing := first_missing({"image_id": image_id, "caption": caption}):
            skips.skip("missing_key", path, f"{place}.{missing}")
        elif image_id not in file_names:
            skips.skip("unknown_image_id", path, f"{place}.image_id")
        elif not has_words(caption):
            skips.skip("empty_caption", path, f"{place}.caption")
        else:
            yield Entry(file_names[image_id], caption.strip(), split, path, place)
