"""The memory-mapped `.bin` reader gives exactly fastText's word vectors, without fastText."""

from __future__ import annotations

import numpy as np
import pytest

from captioner.core.errors import PipelineError
from captioner.inputs.fasttext_bin import FastTextBin, char_ngrams
from tests.helpers.vectors import CORPUS_WORDS, train_bin

# In the dictionary, outside it (n-grams alone, multi-byte characters included), the end-of-sentence
# token (its own row, no n-grams) and words too short for any n-gram.
WORDS = CORPUS_WORDS + ["</s>", "unseen", "cafés", "ß", "日本語", "x", ""]


@pytest.mark.parametrize(("minn", "maxn"), [(2, 4), (1, 3), (3, 6)])
def test_vectors_equal_fasttext_s_in_and_out_of_the_dictionary(tmp_path, minn, maxn):
    model = train_bin(tmp_path / "model.bin", minn=minn, maxn=maxn)
    reader = FastTextBin(tmp_path / "model.bin", WORDS)
    assert reader.dim == 8
    assert reader.in_dictionary == set(WORDS) & set(model.words)
    assert "unseen" not in reader.in_dictionary and "café" in reader.in_dictionary
    for word in WORDS:
        np.testing.assert_allclose(reader.vector(word), model.get_word_vector(word), atol=1e-6,
                                   err_msg=word)
    assert reader.vector("unseen").any()


def test_ngrams_are_utf8_characters_with_single_marks_skipped():
    assert char_ngrams("é", 1, 2) == ["<é".encode(), "é".encode(), "é>".encode()]


def test_a_vec_file_given_as_bin_is_named(tmp_path):
    path = tmp_path / "vectors.bin"
    path.write_text("2 3\ndog 1 2 3\ncat 4 5 6\n" * 20)
    with pytest.raises(PipelineError, match=r"vectors.bin: not a readable fastText .bin model: "
                                            r"wrong magic number"):
        FastTextBin(path, ["dog"])


def test_a_truncated_model_is_named(tmp_path):
    train_bin(tmp_path / "model.bin")
    data = (tmp_path / "model.bin").read_bytes()
    (tmp_path / "cut.bin").write_bytes(data[:len(data) // 2])
    with pytest.raises(PipelineError, match=r"cut.bin: .* the file ends inside the \d+ x 8 input"):
        FastTextBin(tmp_path / "cut.bin", ["dog"])


def test_an_empty_file_is_named(tmp_path):
    (tmp_path / "empty.bin").write_bytes(b"")
    with pytest.raises(PipelineError, match=r"empty.bin: cannot read the fastText model"):
        FastTextBin(tmp_path / "empty.bin", ["dog"])
