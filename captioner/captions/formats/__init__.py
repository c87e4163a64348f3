"""The caption formats tokenize reads, and `auto`, which picks one from the files present.

Each format is a module with `NAME`, `PATTERN` (the captions file it looks for, for messages),
`find_files(text_dir)` (those files by name; none when the format is absent) and
`read(files, text, skips) -> Source` (see `captioner.captions.formats.base`). The names matter only in a
folder unpacked from an archive, and to `auto`: a single captions file that the user named is read
in the chosen format whatever it is called.
"""

from __future__ import annotations

from types import ModuleType

from captioner.captions.formats import coco, csv_captions, flickr8k, flickr30k, karpathy
from captioner.captions.formats.base import CaptionFile, Skips, Source, TextFolder
from captioner.core.errors import PipelineError

# In the order `auto` tries them: Karpathy's file first, as it gives all three splits.
FORMATS = {module.NAME: module for module in (karpathy, coco, flickr8k, flickr30k, csv_captions)}
AUTO = "auto"


def detect(text: TextFolder) -> str:
    """The first format whose captions file is present, by name; says which on stdout."""
    present = {name: files for name, module in FORMATS.items()
               if (files := module.find_files(text.folder))}
    if not present:
        expected = ", ".join(f"{module.PATTERN} ({name})" for name, module in FORMATS.items())
        what = "cannot tell the file's format from its name" if text.single_file else \
            "no captions file of a known format"
        raise PipelineError(f"{text.label}: {what} (looked for {expected}); set tokenize.format")
    chosen, *others = present
    files = ", ".join(path.name for path in present[chosen])
    also = f"; also present: {', '.join(others)} (set tokenize.format to use one)" if others else ""
    print(f"tokenize: format auto chose {chosen} ({files}){also}")
    return chosen


def open_source(name: str, text: TextFolder, skips: Skips) -> tuple[str, Source]:
    """The format's name (the detected one for `auto`) and its entries, read lazily."""
    if name == AUTO:
        name = detect(text)
    module = FORMATS[name]
    files = caption_files(module, text)
    if not files:
        raise PipelineError(f"{text.label}: no {module.PATTERN} for tokenize.format={name}")
    return name, module.read(files, text, skips)


def caption_files(module: ModuleType, text: TextFolder) -> list[CaptionFile]:
    """The single file the user named, or the files a format's names find in the folder."""
    if text.single_file is not None:
        return [text.file(text.folder / text.single_file)]
    return [text.file(path) for path in module.find_files(text.folder)]
