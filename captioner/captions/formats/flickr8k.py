"""Flickr8k: `Flickr8k.token.txt` (`IMAGE.jpg#N<TAB>caption` lines) and the official split lists.

Only images that a split list names are used; the dev list gives the val split. The lists come with
the token file in an archive (`Flickr8k_text.zip`): a token file given alone is refused, pointing
to `flickr30k`, which reads the same lines and carves the splits.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from itertools import chain
from pathlib import Path

from captioner.captions.formats.base import CaptionFile, Entry, Skips, Source, TextFolder, only_file
from captioner.core.errors import PipelineError
from captioner.core.text import has_words

NAME = "flickr8k"
TOKEN_FILE = "Flickr8k.token.txt"
PATTERN = TOKEN_FILE
SPLIT_FILES = {
    "train": "Flickr_8k.trainImages.txt",
    "dev": "Flickr_8k.devImages.txt",
    "test": "Flickr_8k.testImages.txt",
}
_SPLIT_OF_LIST = {"train": "train", "dev": "val", "test": "test"}
_CAPTION_ID = re.compile(r"^(?P<image>[^#\s]+)#(?P<number>\d+)$")


def find_files(text_dir: Path) -> list[Path]:
    """The token file, when present."""
    token_file = text_dir / TOKEN_FILE
    return [token_file] if token_file.is_file() else []


def read(files: list[CaptionFile], text: TextFolder, skips: Skips) -> Source:
    """The split lists' entries first, then the token file's captions."""
    token_file = only_file(files, text, PATTERN)
    if text.single_file is not None:
        raise PipelineError(f"{token_file}: tokenize.format=flickr8k reads {TOKEN_FILE} with its split "
                            f"lists ({', '.join(SPLIT_FILES.values())}) from an archive such as "
                            "Flickr8k_text.zip; for a single file of IMAGE#N<TAB>caption lines set "
                            "tokenize.format=flickr30k")
    listed = [list_entries(text.file(text.folder / name), _SPLIT_OF_LIST[key])
              for key, name in SPLIT_FILES.items()]
    return Source(chain(*listed, token_lines(token_file, skips)), only_listed=True)


def list_entries(path: CaptionFile, split: str) -> list[Entry]:
    """A split list's image names (one per line; blank lines skipped) as entries without captions."""
    try:
        lines = Path(path).read_text(encoding="utf-8", errors="strict").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise PipelineError(f"{path}: cannot read the split list: {error}") from None
    return [Entry(line.strip(), None, split, path, number)
            for number, line in enumerate(lines, start=1) if line.strip()]


def token_lines(path: CaptionFile, skips: Skips) -> Iterator[Entry]:
    """Reads `IMAGE#N<TAB>caption` lines, tolerating CRLF, blank lines and malformed lines.

    Lines that cannot be used are skipped and counted by reason: invalid UTF-8, no tab or no `#N`,
    an empty caption, or a caption id seen before (the first one is kept). An image name that is
    not an image file (such as Flickr8k's stray `...jpg.1`) is left to `captioner.captions.collect.collect`.
    """
    try:
        handle = open(path, "rb")
    except OSError as error:
        raise PipelineError(f"{path}: cannot read the caption file: {error.strerror}") from None
    seen_ids: set[str] = set()
    with handle:
        for number, raw_line in enumerate(handle, start=1):
            parsed = _parse_line(raw_line, path, number, skips)
            if parsed is None:
                continue
            caption_id, image, caption = parsed
            if caption_id in seen_ids:
                skips.skip("duplicate_caption_id", path, number)
                continue
            seen_ids.add(caption_id)
            yield Entry(image, caption, None, path, number)
    if not seen_ids:
        raise PipelineError(f"{path}: no usable 'IMAGE.jpg#N<TAB>caption' lines")


def _parse_line(raw_line: bytes, path: CaptionFile, number: int,
                skips: Skips) -> tuple[str, str, str] | None:
    """The line's caption id, image name and caption; None for a blank or skipped line."""
    try:
        line = raw_line.decode("utf-8").strip()
    except UnicodeDecodeError:
        skips.skip("invalid_utf8", path, number)
        return None
    if not line:
        return None
    caption_id, tab, caption = line.partition("\t")
    caption_id, caption = caption_id.strip(), caption.strip()
    match = _CAPTION_ID.match(caption_id)
    if not tab or not match:
        reason = "malformed_line"
    elif not has_words(caption):
        reason = "empty_caption"
    else:
        return caption_id, match["image"], caption
    skips.skip(reason, path, number)
    return None
