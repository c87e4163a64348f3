"""Word embeddings for the vocabulary: fastText trained on the captions, or pretrained vectors.

Pretrained vectors are read without holding the file in memory: `.vec` text line by line (plain,
gzip-compressed or the `.vec` member of a zip archive, streamed; a line over MAX_LINE_CHARS is
refused), keeping the vocabulary's rows only; a fastText `.bin` model through
captioner.inputs.fasttext_bin (memory-mapped), which also gives words outside its dictionary a
vector from their character n-grams. The file's dimension is checked against `embed.dim` before
anything is allocated, and a value that is not finite (NaN, inf) is refused.
"""

from __future__ import annotations

import gzip
import io
import lzma
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Collection, Iterator, Sequence
from pathlib import Path

import fasttext
import numpy as np

from captioner.core.errors import PipelineError
from captioner.core.text import PAD_ID, SPECIAL_TOKENS
from captioner.inputs.fasttext_bin import FastTextBin

# fastText hashes character n-grams into this many rows; its default (2M rows) costs
# 2.4 GB at 300 dimensions, far more than a caption corpus of a few thousand words needs.
NGRAM_BUCKETS = 200_000
# The longest `.vec` line read: a word and its values (300 of them take about 3,000 characters).
MAX_LINE_CHARS = 1 << 20


def train_fasttext(
    sentences: Sequence[Sequence[str]], dim: int, epoch: int, minn: int, maxn: int
) -> fasttext.FastText._FastText:
    """Trains a skipgram fastText model on the sentences.

    fastText's Python API has no seed argument and uses a fixed internal seed. The result is
    repeatable only with one thread and one model per process: its vectorised sums also round
    differently with the memory alignment of its buffers, so a second model trained in the same
    process can differ in the last bits (the embed stage trains one, in its own process).
    """
    with tempfile.TemporaryDirectory() as folder:
        corpus = Path(folder) / "corpus.txt"
        corpus.write_text("".join(" ".join(words) + "\n" for words in sentences), encoding="utf-8")
        return fasttext.train_unsupervised(
            str(corpus), model="skipgram", dim=dim, epoch=epoch, minn=minn, maxn=maxn,
            minCount=1, bucket=NGRAM_BUCKETS, thread=1, verbose=0,
        )


def matrix_from_model(
    model: fasttext.FastText._FastText, vocabulary: Sequence[str], seed: int
) -> tuple[np.ndarray, float]:
    """One row per vocabulary word (subword vectors for words the model never saw) and coverage."""
    return _from_subwords(model.get_word_vector, set(model.words), model.get_dimension(),
                          vocabulary, seed)


def matrix_from_bin(path: Path, vocabulary: Sequence[str], seed: int,
                    dim: int) -> tuple[np.ndarray, float]:
    """As matrix_from_model, from a fastText `.bin` model file of dimension `dim`, memory-mapped."""
    model = FastTextBin(path, vocabulary[len(SPECIAL_TOKENS):])
    _check_dim(path, model.dim, dim)
    matrix, coverage = _from_subwords(model.vector, model.in_dictionary, model.dim, vocabulary, seed)
    if not np.isfinite(matrix).all():
        raise PipelineError(f"{path}: a vocabulary word's vector holds a value that is not finite")
    return matrix, coverage


def _check_dim(path: Path, found: int, dim: int) -> None:
    if found != dim:
        raise PipelineError(f"{path}: vectors have {found} dimensions but embed.dim is {dim}")


def _from_subwords(
    vector: Callable[[str], np.ndarray], known: Collection[str], dim: int,
    vocabulary: Sequence[str], seed: int,
) -> tuple[np.ndarray, float]:
    words = vocabulary[len(SPECIAL_TOKENS):]
    rows = {word: vector(word) for word in words}
    coverage = sum(word in known for word in words) / max(len(words), 1)
    return _assemble(vocabulary, rows, dim, seed), coverage


def _open_text(path: Path) -> Iterator[str]:
    """Lines of a `.vec` file, plain, gzip-compressed or the first member of a zip archive."""
    if path.suffix == ".gz":
        with gzip.open(path, "rt", encoding="utf-8", errors="replace") as handle:
            yield from _bounded_lines(path, handle)
    elif path.suffix == ".zip":
        with zipfile.ZipFile(path) as archive:
            members = [n for n in archive.namelist() if n.endswith(".vec")]
            if not members:
                raise PipelineError(f"{path}: the zip archive holds no .vec file")
            with archive.open(members[0]) as raw:
                yield from _bounded_lines(path, io.TextIOWrapper(raw, encoding="utf-8", errors="replace"))
    else:
        with open(path, encoding="utf-8", errors="replace") as handle:
            yield from _bounded_lines(path, handle)


def _bounded_lines(path: Path, handle: io.TextIOBase) -> Iterator[str]:
    number = 0
    while line := handle.readline(MAX_LINE_CHARS + 1):
        number += 1
        if len(line) > MAX_LINE_CHARS:
            raise PipelineError(f"{path}: line {number} is over {MAX_LINE_CHARS} characters")
        yield line


def matrix_from_vec(path: Path, vocabulary: Sequence[str], seed: int,
                    dim: int) -> tuple[np.ndarray, float]:
    """Streams a `.vec` text file of dimension `dim` keeping only vocabulary rows; returns the matrix
    and coverage.

    Words missing from the file get seeded random vectors, like the special tokens.
    """
    wanted = set(vocabulary[len(SPECIAL_TOKENS):])
    rows: dict[str, np.ndarray] = {}
    try:
        for line_number, line in enumerate(_open_text(path), start=1):
            word, _, values = line.rstrip().partition(" ")
            width = values.count(" ") + 1 if values else 0  # without splitting unwanted lines
            if line_number == 1:
                header = word.isdigit() and values.isdigit()  # the "count dim" line
                _check_dim(path, int(values) if header else width, dim)
                if header:
                    continue
            if width != dim:
                raise PipelineError(f"{path}: line {line_number} has {width} values, expected {dim}")
            if word in wanted and word not in rows:
                rows[word] = np.asarray(values.split(" "), dtype=np.float32)
                if not np.isfinite(rows[word]).all():
                    raise PipelineError(f"{path}: line {line_number} holds a value that is not finite")
    except (OSError, EOFError, zlib.error, lzma.LZMAError, zipfile.BadZipFile, RuntimeError) as error:
        raise PipelineError(f"{path}: cannot read word vectors: {error}") from None
    except ValueError as error:
        raise PipelineError(f"{path}: not a word-vector text file: {error}") from None
    if not rows:
        raise PipelineError(f"{path}: no vectors for any vocabulary word")
    return _assemble(vocabulary, rows, dim, seed), len(rows) / max(len(wanted), 1)


def matrix_from_file(path: Path, vocabulary: Sequence[str], seed: int,
                     dim: int) -> tuple[np.ndarray, float]:
    """Builds the matrix from pretrained vectors of dimension `dim`: a fastText `.bin` model or
    `.vec` text."""
    if path.suffix == ".bin":
        return matrix_from_bin(path, vocabulary, seed, dim)
    return matrix_from_vec(path, vocabulary, seed, dim)


def _assemble(
    vocabulary: Sequence[str], rows: dict[str, np.ndarray], dim: int, seed: int
) -> np.ndarray:
    """Stacks the rows in vocabulary order: padding zeros, other missing rows seeded random."""
    found = np.stack(list(rows.values())) if rows else np.zeros((1, dim), np.float32)
    scale = float(found.std()) or 1.0
    random_rows = np.random.default_rng(seed).normal(0.0, scale, (len(vocabulary), dim))
    matrix = random_rows.astype(np.float32)
    for index, word in enumerate(vocabulary):
        if word in rows:
            matrix[index] = rows[word]
    matrix[PAD_ID] = 0.0
    return matrix
