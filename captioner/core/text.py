"""Caption text: cleaning, the vocabulary with its special tokens, encoding and decoding."""

from __future__ import annotations

import collections
import re
from collections.abc import Iterable, Sequence

PAD, UNK, START, END = "<pad>", "<unk>", "<start>", "<end>"
SPECIAL_TOKENS = (PAD, UNK, START, END)
PAD_ID, UNK_ID, START_ID, END_ID = range(4)

_NOT_A_LETTER = re.compile(r"[^a-z]+")
_A_LETTER = re.compile(r"[a-z]")


def clean(caption: str) -> list[str]:
    """Lowercases and keeps only letters: punctuation and digits become spaces, one-letter words stay."""
    return _NOT_A_LETTER.sub(" ", caption.lower()).split()


def has_words(caption: str) -> bool:
    """Whether `clean(caption)` keeps any word (a cheaper test than cleaning)."""
    return _A_LETTER.search(caption.lower()) is not None


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
