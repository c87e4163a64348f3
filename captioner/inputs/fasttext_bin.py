"""Word vectors from a fastText `.bin` model without loading the model into memory.

`fasttext.load_model` reads the whole file (7 GB for `cc.en.300.bin`). Here the header and the
dictionary are parsed, the input matrix ((nwords + bucket) x dim float32 rows) is memory-mapped,
and a word's vector is computed as fastText's `getWordVector` does: the mean of the word's own row
(when the dictionary has it) and the rows of its character n-grams of `<word>`, each n-gram hashed
with fastText's FNV-1a variant into `bucket` rows. Only the rows of the words asked for are read.

Layout (little-endian): magic, version (int32); args: dim, ws, epoch, minCount, neg, wordNgrams,
loss, model, bucket, minn, maxn, lrUpdateRate (int32), t (float64); dictionary: size, nwords,
nlabels (int32), ntokens, pruneidx_size (int64), per entry the word's UTF-8 bytes, a NUL, count
(int64) and type (int8), then pruneidx_size (int32, int32) pairs; quant (bool); the input matrix:
rows, columns (int64), then the float32 values row by row.
"""

from __future__ import annotations

import mmap
import struct
from collections.abc import Collection
from pathlib import Path

import numpy as np

from captioner.core.errors import PipelineError

MAGIC = 793712314
NEWEST_VERSION = 12
SUPERVISED = 3  # fastText's model_name::sup
EOS = "</s>"
HEADER = struct.Struct("<2i12id")  # magic, version, the 12 int32 args, t
DICTIONARY_HEADER = struct.Struct("<3i2q")
ENTRY_TAIL = 9  # count (int64) and type (int8) after a word's NUL
PRUNE_PAIR_BYTES = 8  # int32 bucket, int32 row: only quantized models have them
MATRIX_HEADER = struct.Struct("<2q")
MAX_NGRAM = 64  # longer character n-grams than any fastText model uses
FNV_OFFSET = 2166136261
FNV_PRIME = 16777619


def ngram_hash(ngram: bytes) -> int:
    """fastText's FNV-1a variant: each byte is sign-extended (read as int8) before the xor."""
    h = FNV_OFFSET
    for byte in ngram:
        h = ((h ^ (byte | 0xFFFFFF00 if byte >= 0x80 else byte)) * FNV_PRIME) & 0xFFFFFFFF
    return h


def char_ngrams(word: str, minn: int, maxn: int) -> list[bytes]:
    """The n-grams (minn..maxn characters) of `<word>` that fastText hashes, in its order.

    Characters are UTF-8 sequences; single-character n-grams of the `<` and `>` marks are skipped.
    """
    text = f"<{word}>".encode()
    starts = [i for i, byte in enumerate(text) if byte & 0xC0 != 0x80] + [len(text)]
    ngrams = []
    for first in range(len(starts) - 1):
        for n in range(max(minn, 1), maxn + 1):
            if first + n >= len(starts):
                break
            if n == 1 and (first == 0 or first + 1 == len(starts) - 1):
                continue
            ngrams.append(text[starts[first]:starts[first + n]])
    return ngrams


class FastTextBin:
    """A fastText `.bin` model opened for the vectors of a known set of words.

    `in_dictionary` holds those of the words the model's dictionary has; `vector(word)` works
    for any word, from its n-grams alone when the dictionary lacks it.
    """

    def __init__(self, path: Path, words: Collection[str]) -> None:
        self.path = path
        try:
            with open(path, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as view:
                offset = self._read_header(view)
                offset, self._word_ids = self._read_dictionary(view, offset, words)
                rows, columns, offset = self._read_matrix_header(view, offset)
        except IndexError:
            raise self._fail("the file ends inside its header or dictionary") from None
        except (ValueError, struct.error, OSError) as error:
            raise PipelineError(f"{path}: cannot read the fastText model: {error}") from None
        self._rows = np.memmap(path, dtype="<f4", mode="r", offset=offset, shape=(rows, columns))
        self.in_dictionary = set(self._word_ids)

    def _fail(self, problem: str) -> PipelineError:
        return PipelineError(f"{self.path}: not a readable fastText .bin model: {problem}")

    def _read_header(self, view: mmap.mmap) -> int:
        magic, version, *args, _ = HEADER.unpack_from(view, 0)
        if magic != MAGIC:
            raise self._fail("wrong magic number (a .vec text file, or compressed?)")
        if version > NEWEST_VERSION:
            raise self._fail(f"format version {version} is newer than {NEWEST_VERSION}")
        self.dim, model, self.bucket, self.minn, self.maxn = args[0], args[7], args[8], args[9], args[10]
        if version == 11 and model == SUPERVISED:
            self.maxn = 0  # as fastText does: old supervised models had no character n-grams
        if self.dim <= 0 or self.bucket < 0 or self.minn < 0 or not 0 <= self.maxn <= MAX_NGRAM:
            raise self._fail(f"impossible settings (dim {self.dim}, bucket {self.bucket}, "
                             f"n-grams {self.minn} to {self.maxn})")
        return HEADER.size

    def _read_dictionary(
        self, view: mmap.mmap, offset: int, words: Collection[str]
    ) -> tuple[int, dict[str, int]]:
        size, self.nwords, _, _, prune_pairs = DICTIONARY_HEADER.unpack_from(view, offset)
        if not 0 <= self.nwords <= size or prune_pairs * PRUNE_PAIR_BYTES > len(view):
            raise self._fail(f"impossible dictionary counts ({size} entries, {self.nwords} words, "
                             f"{prune_pairs} pruned rows)")
        offset += DICTIONARY_HEADER.size
        wanted = {word.encode(): word for word in words}
        found = {}
        for index in range(size):
            end = view.find(b"\0", offset)
            if end < 0:
                raise self._fail(f"dictionary entry {index} is cut short")
            word = wanted.get(view[offset:end])
            if word is not None and index < self.nwords:
                found[word] = index
            offset = end + 1 + ENTRY_TAIL
        return offset + max(prune_pairs, 0) * PRUNE_PAIR_BYTES, found

    def _read_matrix_header(self, view: mmap.mmap, offset: int) -> tuple[int, int, int]:
        if view[offset]:
            raise self._fail("quantized models (.ftz) are not supported")
        rows, columns = MATRIX_HEADER.unpack_from(view, offset + 1)
        offset += 1 + MATRIX_HEADER.size
        if columns != self.dim or not self.nwords <= rows <= self.nwords + self.bucket:
            raise self._fail(f"input matrix is {rows} x {columns} for {self.nwords} words of "
                             f"dimension {self.dim}")
        if offset + rows * columns * 4 > len(view):
            raise self._fail(f"the file ends inside the {rows} x {columns} input matrix")
        return rows, columns, offset

    def _ngram_rows(self, word: str) -> list[int]:
        if self.bucket <= 0:
            return []
        return [self.nwords + ngram_hash(ngram) % self.bucket
                for ngram in char_ngrams(word, self.minn, self.maxn)]

    def vector(self, word: str) -> np.ndarray:
        """The word's vector as fastText's `get_word_vector` computes it (zeros without any row)."""
        own = self._word_ids.get(word)
        rows = ([own] if own is not None else []) + ([] if word == EOS else self._ngram_rows(word))
        if not rows:
            return np.zeros(self.dim, np.float32)
        return self._rows[sorted(rows)].astype(np.float64).mean(axis=0).astype(np.float32)
