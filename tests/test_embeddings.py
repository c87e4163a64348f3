"""The embedding matrix from fastText trained on captions and from pretrained vectors."""

from __future__ import annotations

import subprocess
import sys
import zipfile

import numpy as np
import pytest

from captioner.core.errors import PipelineError
from captioner.inputs.embeddings import matrix_from_file, matrix_from_vec
from tests.helpers.project import ROOT
from tests.helpers.vectors import train_bin, write_vec

VOCABULARY = ["<pad>", "<unk>", "<start>", "<end>", "dog", "cat", "runs"]


SENTENCES = [["a", "dog", "runs"], ["a", "cat", "sleeps"], ["the", "dog", "sleeps"]] * 20
# Trains in a fresh interpreter, as the embed stage does, and prints the coverage and the
# matrix's bytes in hex. fastText's vectorised sums round differently with the memory alignment of
# its buffers, which is the same from one fresh process to the next but not within a process that
# has done other work (a long test session can even see it diverge), so training runs only there.
TRAIN_IN_FRESH_PROCESS = f"""
from captioner.inputs.embeddings import matrix_from_model, train_fasttext
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


@pytest.mark.parametrize("name", ["vectors.vec", "vectors.vec.gz", "wiki.vec.zip"])
def test_vec_streaming_keeps_vocabulary_rows(tmp_path, name):
    vectors = {word: np.asarray(values, np.float32) for word, values in
               [("dog", [1, 2, 3]), ("horse", [9, 9, 9]), ("cat", [4, 5, 6]), ("running", [7, 7, 7])]}
    matrix, coverage = matrix_from_file(write_vec(tmp_path / name, vectors), VOCABULARY, seed=0, dim=3)
    np.testing.assert_array_equal(matrix[4], [1, 2, 3])
    np.testing.assert_array_equal(matrix[5], [4, 5, 6])
    assert coverage == pytest.approx(2 / 3)
    assert not matrix[0].any() and matrix[6].any()  # "runs" is missing: a seeded random row


def test_vec_with_a_ragged_line_names_file_and_line(tmp_path):
    path = tmp_path / "bad.vec"
    path.write_text("dog 1 2 3\ncat 4 5\n")
    with pytest.raises(PipelineError, match=r"bad.vec: line 2 has 2 values, expected 3"):
        matrix_from_vec(path, VOCABULARY, seed=0, dim=3)


def test_a_zip_without_a_vec_member_is_named(tmp_path):
    path = tmp_path / "vectors.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("vectors.txt", "dog 1 2 3\n")
    with pytest.raises(PipelineError, match=r"vectors.zip: the zip archive holds no .vec file"):
        matrix_from_vec(path, VOCABULARY, seed=0, dim=3)


def test_bin_matrix_has_fasttext_s_vectors_and_dictionary_coverage(tmp_path):
    model = train_bin(tmp_path / "model.bin")
    vocabulary = VOCABULARY[:4] + ["dog", "cat", "unseen"]
    matrix, coverage = matrix_from_file(tmp_path / "model.bin", vocabulary, seed=0, dim=8)
    assert coverage == pytest.approx(2 / 3)
    assert not matrix[0].any()
    for index, word in enumerate(vocabulary[4:], start=4):
        np.testing.assert_allclose(matrix[index], model.get_word_vector(word), atol=1e-6)
