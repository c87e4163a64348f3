"""Flickr30k: one `*.token` file (upstream `results_20130124.token`; any name when given alone) of
`IMAGE.jpg#N<TAB>caption` lines, with no splits: train takes every image, val and test are carved
from it."""

from __future__ import annotations

from pathlib import Path

from captioner.captions.formats.base import CaptionFile, Skips, Source, TextFolder, only_file
from captioner.captions.formats.flickr8k import token_lines

NAME = "flickr30k"
PATTERN = "*.token"


def find_files(text_dir: Path) -> list[Path]:
    """The `*.token` files."""
    return sorted(text_dir.glob(PATTERN))


def read(files: list[CaptionFile], text: TextFolder, skips: Skips) -> Source:
    """The token file's captions, without splits."""
    return Source(token_lines(only_file(files, text, PATTERN), skips))
