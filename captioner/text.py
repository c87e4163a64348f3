"""Caption text: parsing Flickr8k's token file, cleaning, the vocabulary, encoding, and the splits."""

from __future__ import annotations

import collections
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from captioner.errors import PipelineError

PAD, UNK, START, END = "<pad>", "<unk>", "<start>", "<end>"
SPECIAL_TOKENS = (PAD, UNK, START, END)
PAD_ID, UNK_ID, START_ID, END_ID = range(4)

TOKEN_FILE = "Flickr8k.token.txt"
SPLIT_FILES = {
    "train": "Flickr_8k.trainImages.txt",
    "dev": "Flickr_8k.devImages.txt",
    "test": "Flickr_8k.testImages.txt",
}
_CAPTION_ID = re.compile(r"^(?P<image>[^#\s]+)#(?P<number>\d+)$")
_IMAGE_ID = re.compile(r"^[\w.-]+\.jpg$", re.IGNORECASE)
_NOT_A_LETTER = re.compile(r"[^a-z]+")


@dataclass
class ParsedCaptions:
    """Raw captions per image id, in file order, and the lines dropped: how many and the first
    line number (1-based), by reason."""

    captions: dict[str, list[str]] = field(default_factory=dict)
    dropped: collections.Counter = field(default_factory=collections.Counter)
    first_dropped_line: dict[str, int] = field(default_factory=dict)

    def drop(self, reason: str, line_number: int) -> None:
        """Counts a dropped line under `reason`."""
        self.dropped[reason] += 1
        self.first_dropped_line.setdefault(reason, line_number)


def clean(caption: str) -> list[str]:
    """Lowercases and keeps only letters: punctuation and digits become spaces, one-letter words stay."""
    return _NOT_A_LETTER.sub(" ", caption.lower()).split()


def parse_token_file(path: Path) -> ParsedCaptions:
    """Reads `IMAGE.jpg#N<TAB>caption` lines, tolerating CRLF, blank lines and malformed lines.

    Lines that cannot be used are dropped and counted by reason: invalid UTF-8, no tab or no `#N`,
    an image id that is not `NAME.jpg` (such as the stray `...jpg.1`), an empty caption, or a
    caption id seen before (the first one is kept).
    """
    try:
        data = path.read_bytes()
    except OSError as error:
        raise PipelineError(f"{path}: cannot read the caption file: {error.strerror}") from None
    parsed = ParsedCaptions()
    seen_ids: set[str] = set()
    for line_number, raw_line in enumerate(data.splitlines(), start=1):
        try:
            line = raw_line.decode("utf-8").strip()
        except UnicodeDecodeError:
            parsed.drop("invalid_utf8", line_number)
            continue
        if not line:
            continue
        caption_id, tab, caption = line.partition("\t")
        match = _CAPTION_ID.match(caption_id.strip())
        if not tab or not match:
            parsed.drop("malformed_line", line_number)
            continue
        image = match["image"]
        if not _IMAGE_ID.match(image):
            parsed.drop("bad_image_id", line_number)
            continue
        if not clean(caption):
            parsed.drop("empty_caption", line_number)
            continue
        if caption_id in seen_ids:
            parsed.drop("duplicate_caption_id", line_number)
            continue
        seen_ids.add(caption_id)
        parsed.captions.setdefault(image, []).append(caption.strip())
    if not parsed.captions:
        raise PipelineError(f"{path}: no usable 'IMAGE.jpg#N<TAB>caption' lines")
    return parsed


def read_image_list(path: Path) -> list[str]:
    """Reads a split list (one image file name per line), skipping blank lines, keeping order."""
    try:
        lines = path.read_text(encoding="utf-8", errors="strict").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise PipelineError(f"{path}: cannot read the split list: {error}") from None
    return list(dict.fromkeys(line.strip() for line in lines if line.strip()))


def build_vocabulary(captions: Iterable[list[str]], min_count: int) -> list[str]:
    """Special tokens, then words seen at least `min_count` times, most frequent first."""
    counts = collections.Counter(word for words in captions for word in words)
    frequent = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
    return [*SPECIAL_TOKENS, *frequent]


def encode(words: Sequence[str], word_ids: dict[str, int], max_length: int) -> list[int]:
    """Start token, word ids (rare words as unknown), end token; at most `max_length` ids in all."""
    body = [word_ids.get(word, UNK_ID) for word in words][: max_length - 2]
    return [START_ID, *body, END_ID]


def decode(ids: Iterable[int], vocabulary: Sequence[str]) -> str:
    """Turns generated ids into text, stopping at the end token and leaving out special tokens."""
    words = []
    for token_id in ids:
        if token_id == END_ID:
            break
        if token_id not in (PAD_ID, START_ID):
            words.append(vocabulary[token_id])
    return " ".join(words)


def carve_validation(train_images: Sequence[str], count: int, seed: int) -> list[str]:
    """Picks `count` validation images from the sorted train images with NumPy's PCG64 generator."""
    if count >= len(train_images):
        raise PipelineError(
            f"tokenize.val_images={count} leaves no training images "
            f"(only {len(train_images)} train images are present)"
        )
    pool = sorted(train_images)
    chosen = np.random.default_rng(seed).choice(len(pool), size=count, replace=False)
    return [pool[i] for i in sorted(chosen)]


def make_splits(
    lists: dict[str, list[str]],
    present: set[str],
    captions: dict[str, list[str]],
    val_images: int,
    seed: int,
) -> tuple[dict[str, list[str]], dict[str, object]]:
    """Train, val and test image ids: the official lists restricted to images present with captions.

    Validation is the official dev split when any of its images are present, otherwise
    `val_images` images carved from train. Returns the splits and a report: where validation
    came from and, per official list, how many of its images were absent or had no captions.
    """
    usable = {name: [i for i in ids if i in present and i in captions] for name, ids in lists.items()}
    skipped = {
        name: {
            "listed": len(ids),
            "image_missing": sum(i not in present for i in ids),
            "no_captions": sum(i in present and i not in captions for i in ids),
        }
        for name, ids in lists.items()
    }
    train, validation = usable["train"], usable["dev"]
    source = "official dev split"
    if not validation:
        validation = carve_validation(train, val_images, seed)
        carved = set(validation)
        train = [i for i in train if i not in carved]
        source = f"{val_images} images carved from train (numpy PCG64, seed {seed})"
    splits = {"train": train, "val": validation, "test": usable["test"]}
    for name, ids in splits.items():
        if not ids:
            official = "dev" if name == "val" else name
            counts = skipped[official]
            raise PipelineError(
                f"split '{name}' is empty: none of the {counts['listed']} images of "
                f"{SPLIT_FILES[official]} are both in data/raw/images and captioned "
                f"({counts['image_missing']} absent, {counts['no_captions']} without captions)"
            )
    return splits, {"validation": source, "split_lists": skipped}
