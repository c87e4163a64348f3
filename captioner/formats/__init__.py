"""The caption formats tokenize reads, and `auto`, which picks one from the files present.

Each format is a module with `NAME`, `PATTERN` (the captions file it looks for, for messages),
`find_files(text_dir)` (those files; none when the format is absent) and
`read(text_dir, skips) -> Source` (see `captioner.formats.base`).
"""

from __future__ import annotations

from pathlib import Path

from captioner.errors import PipelineError
from captioner.formats import coco, csv_captions, flickr8k, flickr30k, karpathy
from captioner.formats.base import Skips, Source

# In the order `auto` tries them: Karpathy's file first, as it gives all three splits.
FORMATS = {module.NAME: module for module in (karpathy, coco, flickr8k, flickr30k, csv_captions)}
AUTO = "auto"


def detect(text_dir: Path) -> str:
    """The first format whose captions file is present; says which on stdout."""
    present = {name: files for name, module in FORMATS.items() if (files := module.find_files(text_dir))}
    if not present:
        expected = ", ".join(f"{module.PATTERN} ({name})" for name, module in FORMATS.items())
        raise PipelineError(f"{text_dir}: no captions file of a known format (looked for {expected})")
    chosen, *others = present
    files = ", ".join(path.name for path in present[chosen])
    also = f"; also present: {', '.join(others)} (set tokenize.format to use one)" if others else ""
    print(f"tokenize: format auto chose {chosen} ({files}){also}")
    return chosen


def open_source(name: str, text_dir: Path, skips: Skips) -> tuple[str, Source]:
    """The format's name (the detected one for `auto`) and its entries, read lazily."""
    if name == AUTO:
        name = detect(text_dir)
    module = FORMATS[name]
    if not module.find_files(text_dir):
        raise PipelineError(f"{text_dir}: no {module.PATTERN} for tokenize.format={name}")
    return name, module.read(text_dir, skips)
