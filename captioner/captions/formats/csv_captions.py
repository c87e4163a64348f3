"""CSV: `captions.csv` (any name when given alone) with a header naming an `image` and a `caption`
column and, optionally, a `split` column (train, val or test; an empty cell leaves the image to the
training pool).

One caption per row; an image has as many rows as captions. `image` is a file name or a path
relative to the images folder. Other columns are ignored.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

from captioner.captions.formats.base import (
    CaptionFile,
    Entry,
    Skips,
    Source,
    TextFolder,
    only_file,
    split_named,
    where,
)
from captioner.core.errors import PipelineError
from captioner.core.text import has_words

NAME = "csv"
PATTERN = "captions.csv"
REQUIRED_COLUMNS = ("image", "caption")


def find_files(text_dir: Path) -> list[Path]:
    """`captions.csv`, when present."""
    path = text_dir / PATTERN
    return [path] if path.is_file() else []


def read(files: list[CaptionFile], text: TextFolder, skips: Skips) -> Source:
    """The rows' captions, with their split when the file has a split column."""
    return Source(_entries(only_file(files, text, PATTERN), skips))


def _entries(path: CaptionFile, skips: Skips) -> Iterator[Entry]:
    try:
        # Undecodable bytes become lone surrogates, so that only their rows are skipped.
        handle = open(path, encoding="utf-8-sig", errors="surrogateescape", newline="")
    except OSError as error:
        raise PipelineError(f"{path}: cannot read: {error.strerror}") from None
    with handle:
        rows = csv.reader(handle)
        try:
            header = next(rows, None)
        except csv.Error as error:
            raise PipelineError(f"{where(path, 1)}: {error}") from None
        columns = _columns(path, header)
        image_column, caption_column = columns["image"], columns["caption"]
        split_column = columns.get("split")
        try:
            for row in rows:
                if not row:
                    continue
                place = rows.line_num
                if len(row) != len(header):
                    skips.skip("malformed_line", path, place)
                    continue
                image, caption = row[image_column].strip(), row[caption_column].strip()
                split = row[split_column].strip() if split_column is not None else ""
                reason = _problem(image, caption, split)
                if reason:
                    skips.skip(reason, path, place)
                    continue
                yield Entry(image, caption, split_named(split, path, place, {}) if split else None,
                            path, place)
        except csv.Error as error:
            raise PipelineError(f"{where(path, rows.line_num)}: {error}") from None


def _columns(path: CaptionFile, header: list[str] | None) -> dict[str, int]:
    """Column positions by lower-cased name, refusing a header without `image` or `caption`."""
    names = [name.strip().lower() for name in header or []]
    for required in REQUIRED_COLUMNS:
        if required not in names:
            found = ", ".join(repr(name) for name in names) or "none"
            raise PipelineError(f"{where(path, 1)}: no '{required}' column in the header "
                                f"(expected image,caption[,split]; found {found})")
    return {name: index for index, name in enumerate(names)}


def _problem(image: str, caption: str, split: str) -> str | None:
    """Why a row cannot be used, or None."""
    if not _is_utf8(image + caption + split):
        return "invalid_utf8"
    if not image:
        return "missing_image"
    if not has_words(caption):
        return "empty_caption"
    return None


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
