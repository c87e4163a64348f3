"""The embedding matrix from fastText trained on captions and from pretrained vectors."""

from __future__ import annotations

import gzip
import subprocess
import sys

import numpy as np
import pytest

from captioner.embeddings import matrix_from_vec
from captioner.errors import PipelineError
from tests.project import ROOT

VOCABULARY = ["<pad>", "<unk>", "<start>", "<end>", "dog", "cat", "runs"]


SENTENCES = [["a", "dog", "runs"], ["a", "cat", "sleeps"], ["the", "dog", "sleeps"]] * 20
# Trains in a fresh interpreter, as the embed stage does, and prints the coverage and the
# matrix's bytes in hex. fastText's vectorised sums round differently with the memory alignment of
# its buffers, which is the same from one fresh process to the next but not within a process that
# has done other work (a long test session can even see it diverge), so training runs only there.
TRAIN_IN_FRESH_PROCESS = f"""
from captioner.embeddings import matrix_from_model, train_fasttext
matrix, coverage = matrix_from_model(train_fasttext({SENTENCES!r}, 8, 2, 2, 3), {VOCABULARY!r},
                                     seed=0)
print(coverage, matrix.tobytes().hex())
"""


def test_trained_fasttext_matrix_is_repeatable_with_zero_padding():
    runs = [subprocess.run([sys.executable, "-c", TRAIN_IN_FRESH_PROCESS], capture_output=True,
                           text=True, check=True, cwd=ROOT).stdout for _ in range(2)]
    assert runs[0] == runs[1]
    coverage, matrix_hex = runs[0].split()
    matrix = np.frombuffer(bytes.fromhex(matrix_hex), np.float32).reshape(len(VOCABULARY), 8)
    assert np.isfinite(matrix).all()
    assert not matrix[0].any()
    assert all(matrix[i].any() for i in range(1, len(VOCABULARY)))
    assert float(coverage) == 1.0


@pytest.mark.parametrize("compressed", [False, True])
def test_vec_streaming_keeps_vocabulary_rows(tmp_path, compressed):
    text = "4 3\ndog 1 2 3\nhorse 9 9 9\ncat 4 5 6\nrunning 7 7 7\n"
    path = tmp_path / ("vectors.vec.gz" if compressed else "vectors.vec")
    if compressed:
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    matrix, coverage = matrix_from_vec(path, VOCABULARY, seed=0)
    np.testing.assert_array_equal(matrix[4], [1, 2, 3])
    np.testing.assert_array_equal(matrix[5], [4, 5, 6])
    assert coverage == pytest.approx(2 / 3)
    assert not matrix[0].any() and matrix[6].any()  # "runs" is missing: a seeded random row


def test_vec_with_a_ragged_line_names_file_and_line(tmp_path):
    path = tmp_path / "bad.vec"
    path.write_text("dog 1 2 3\ncat 4 5\n")
    with pytest.raises(PipelineError, match=r"bad.vec: line 2 has 2 values, expected 3"):
        matrix_from_vec(path, VOCABULARY, seed=0)
