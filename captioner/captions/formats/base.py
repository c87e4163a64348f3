"""What every caption format reads and yields: the captions files, a stream of entries, and a
tally of the entries it skipped.

The files are the download stage's copies in `data/raw/text`, each named in messages as the user
gave it: the `download.text_url` of a single captions file, or the archive's with the member's name.
An entry names an image the way its file does (a file name or a relative path), with one caption or
none (an entry that only puts an image in a split), the split its file gives (train, val, test) or
none, and where it came from: the file and a line number or a JSON key, for messages.
"""

from __future__ import annotations

import collections
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import ijson

from captioner.core.errors import PipelineError
from captioner.core.files import read_json

# The deepest JSON a captions file may nest: Karpathy's and COCO's files nest four levels.
MAX_JSON_DEPTH = 64
SPLITS = ("train", "val", "test")
# How the tokenize record describes a split that the captions files named (not carved).
GIVEN_SPLIT = "given by the captions files"


@dataclass(frozen=True)
class CaptionFile(os.PathLike):
    """A captions file: opened at its copy (`path`), named in messages by `label`."""

    path: Path
    label: str

    def __fspath__(self) -> str:
        return os.fspath(self.path)

    def __str__(self) -> str:
        return self.label

    @property
    def name(self) -> str:
        """The copy's file name (an archive member's, or the single file's)."""
        return self.path.name


@dataclass(frozen=True)
class TextFolder:
    """The folder of captions files the download stage filled, and where they came from.

    `source` is `download.text_url` as the user gave it (None where the folder has no record of
    it); `single_file` the one file's name when that source is a single captions file, which is
    then the captions file whatever it is called.
    """

    folder: Path
    source: str | None = None
    single_file: str | None = None

    @classmethod
    def read(cls, folder: Path, record_file: Path | None = None) -> TextFolder:
        """The folder and what the download stage recorded of its source in `record_file`, if
        anything."""
        if record_file is None or not record_file.is_file():
            return cls(folder)
        record = read_json(record_file)
        return cls(folder, record["source"], record["single_file"])

    @property
    def label(self) -> str:
        """How messages name the captions' source: as the user gave it, or else the folder."""
        return self.source or str(self.folder)

    def file(self, path: Path) -> CaptionFile:
        """A file of the folder, labelled by its source."""
        if self.source is None:
            return CaptionFile(path, str(path))
        if self.single_file is not None:
            return CaptionFile(path, self.source)
        return CaptionFile(path, f"{self.source} ({path.name})")


class Entry(NamedTuple):
    """One caption (or one split assignment) as the captions file states it."""

    image: str
    caption: str | None
    split: str | None
    file: CaptionFile
    place: int | str


@dataclass
class Source:
    """A format's entries, read lazily.

    With `only_listed`, the entries giving splits come first and images they do not name are left
    out (Flickr8k's split lists); otherwise images without a split join train, from which any split
    the files do not give is carved.
    """

    entries: Iterator[Entry]
    only_listed: bool = False


def where(file: CaptionFile, place: int | str) -> str:
    """`FILE: line N` or `FILE: KEY`: the start of every message about one entry."""
    return f"{file}: line {place}" if isinstance(place, int) else f"{file}: {place}"


@dataclass
class Skips:
    """Entries left out, counted by reason, with the place of the first one per file and reason."""

    counts: collections.Counter = field(default_factory=collections.Counter)
    first: dict[str, int | str] = field(default_factory=dict)
    per_file: dict[tuple[CaptionFile, str], list] = field(default_factory=dict)

    def skip(self, reason: str, file: CaptionFile, place: int | str) -> None:
        """Counts one skipped entry."""
        self.counts[reason] += 1
        self.first.setdefault(reason, place)
        tally = self.per_file.setdefault((file, reason), [0, place])
        tally[0] += 1

    def warn(self) -> None:
        """One line on stderr per file and reason."""
        for (file, reason), (count, place) in self.per_file.items():
            first = f"line {place}" if isinstance(place, int) else place
            print(f"warning: {file}: skipped {count} entries ({reason}), the first at {first}",
                  file=sys.stderr)


def split_named(value: str, file: CaptionFile, place: int | str, aliases: dict[str, str]) -> str:
    """The split a file's value stands for: train, val or test, or one of the format's aliases."""
    split = aliases.get(value, value)
    if split not in SPLITS:
        known = ", ".join(sorted({*SPLITS, *aliases}))
        raise PipelineError(f"{where(file, place)}: unknown split {value!r} (expected one of {known})")
    return split


def only_file(files: list[CaptionFile], text: TextFolder, pattern: str) -> CaptionFile:
    """The one file matching `pattern`, refusing several."""
    if len(files) > 1:
        names = ", ".join(file.name for file in files)
        raise PipelineError(f"{text.label}: several {pattern} files ({names}); keep one")
    return files[0]


def json_items(path: CaptionFile, prefix: str) -> Iterator[tuple[int, Any]]:
    """Streams the items of the array at `prefix` (e.g. `images.item`) with their index.

    Refuses a file that is not JSON, or that has no such array or an empty one.
    """
    count = 0
    try:
        with open(path, "rb") as handle:
            events = _depth_bounded(path, ijson.parse(handle, use_float=True))
            for count, item in enumerate(ijson.items(events, prefix), start=1):
                yield count - 1, item
    except OSError as error:
        raise PipelineError(f"{path}: cannot read: {error.strerror}") from None
    except ijson.JSONError as error:
        raise PipelineError(f"{path}: not valid JSON: {_first_line(error)}") from None
    if not count:
        key = prefix.replace(".item", "[]")
        raise PipelineError(f"{path}: no {key} entries (missing or empty key)")


def _depth_bounded(path: CaptionFile, events: Iterator[tuple[str, str, Any]]
                   ) -> Iterator[tuple[str, str, Any]]:
    """Passes ijson's parse events on, refusing nesting over MAX_JSON_DEPTH: each event carries its
    path from the root, so a deep file costs the square of its depth."""
    depth = 0
    for prefix, event, value in events:
        if event in ("start_map", "start_array"):
            depth += 1
            if depth > MAX_JSON_DEPTH:
                raise PipelineError(f"{path}: JSON nested over {MAX_JSON_DEPTH} levels deep")
        elif event in ("end_map", "end_array"):
            depth -= 1
        yield prefix, event, value


def _first_line(error: ijson.JSONError) -> str:
    # yajl's messages span three lines (the text and a caret under it), sometimes as bytes.
    message = error.args[0] if error.args else ""
    if isinstance(message, bytes):
        message = message.decode("utf-8", errors="replace")
    return (str(message).strip().splitlines() or [type(error).__name__])[0]


def text_field(item: Any, key: str) -> str | None:
    """`item[key]` when `item` is an object whose `key` holds a string; None otherwise."""
    value = item.get(key) if isinstance(item, dict) else None
    return value if isinstance(value, str) else None


def id_field(item: Any, key: str) -> int | str | None:
    """`item[key]` when `item` is an object whose `key` holds a number or a string; None otherwise."""
    value = item.get(key) if isinstance(item, dict) else None
    return value if isinstance(value, (int, str)) and not isinstance(value, bool) else None


def first_missing(fields: dict[str, Any]) -> str | None:
    """The first key of `fields` whose value is None (absent, or not of the type it must have)."""
    return next((key for key, value in fields.items() if value is None), None)
