"""Small pretrained word-vector files for tests: `.vec` text in each packing fastText publishes
(plain, `.vec.gz`, `.zip`) and real fastText `.bin` models (plain or `.bin.gz`)."""

from __future__ import annotations

import gzip
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import fasttext
import numpy as np

# Words with multi-byte characters too: fastText's n-grams are UTF-8 sequences, its hash sign-extends bytes.
CORPUS_WORDS = "a dog runs in the park café naïve über straße dogs cat sleeps on a mat".split()
# fastText trained on a tiny corpus with a small bucket count can stop with "Encountered NaN";
# this many n-gram rows trains reliably and keeps the model at a few MB.
BUCKET = 200_000


def random_vectors(words: list[str], dim: int, seed: int) -> dict[str, np.ndarray]:
    """One float32 vector per word, values rounded so that their text form reads back exactly."""
    rng = np.random.default_rng(seed)
    return {word: np.round(rng.normal(size=dim), 4).astype(np.float32) for word in words}


def write_vec(path: Path, vectors: dict[str, np.ndarray]) -> Path:
    """Writes `.vec` text (a `count dim` header, then `word v1 ... vn `), gzip-compressed for a
    `.gz` name or as the `.vec` member of a `.zip` archive."""
    dim = len(next(iter(vectors.values())))
    text = f"{len(vectors)} {dim}\n" + "".join(
        f"{word} {' '.join(str(float(value)) for value in vector)} \n"
        for word, vector in vectors.items())
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(text.encode()))
    elif path.suffix == ".zip":
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("readme.txt", "vectors inside\n")
            archive.writestr(path.stem.removesuffix(".vec") + ".vec", text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


# fastText trains in a fresh interpreter: in a process that has run TensorFlow (a test session)
# its training can diverge ("Encountered NaN"); the embed stage, too, runs in a process of its own.
TRAIN_IN_FRESH_PROCESS = """
import sys, fasttext
corpus, target, dim, minn, maxn, bucket = sys.argv[1:]
model = fasttext.train_unsupervised(corpus, model="skipgram", dim=int(dim), epoch=2, minn=int(minn),
                                    maxn=int(maxn), bucket=int(bucket), minCount=1, thread=1, verbose=0)
model.save_model(target)
"""


def train_bin(path: Path, dim: int = 8, minn: int = 2, maxn: int = 4) -> fasttext.FastText._FastText:
    """Trains a skipgram model on sentences of CORPUS_WORDS and saves it to `path` (`.bin`, or
    gzip-compressed for `.bin.gz`); returns the model."""
    rng = np.random.default_rng(0)
    corpus = path.parent / f"{path.name}.corpus.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    corpus.write_text("".join(" ".join(rng.permutation(CORPUS_WORDS)) + "\n" for _ in range(30)),
                      encoding="utf-8")
    plain = path.with_suffix("") if path.suffix == ".gz" else path
    subprocess.run([sys.executable, "-c", TRAIN_IN_FRESH_PROCESS, str(corpus), str(plain), str(dim),
                    str(minn), str(maxn), str(BUCKET)], check=True)
    corpus.unlink()
    model = fasttext.load_model(str(plain))
    if plain != path:
        with open(plain, "rb") as source, gzip.open(path, "wb", compresslevel=1) as target:
            shutil.copyfileobj(source, target)
        plain.unlink()
    return model
