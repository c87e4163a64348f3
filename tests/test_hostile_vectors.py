"""Hostile word-vector files: each ends in one `error:` line naming the file, exit 1, within a
memory and time bound (read in a subprocess under `resource` limits, as the embed stage reads it)."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import pytest

from tests.helpers.archives import patched_zip
from tests.helpers.bounded import MB, one_error, run_bounded
from tests.helpers.vectors import train_bin

# What the embed stage does with a placed vectors file, for a vocabulary of three words and
# embed.dim 3 (or the dim given as the second argument).
READ = """
import sys
from pathlib import Path
from captioner.core.errors import run_stage
from captioner.inputs.embeddings import matrix_from_file
vocabulary = ["<pad>", "<unk>", "<start>", "<end>", "dog", "cat", "runs"]
run_stage(lambda: matrix_from_file(Path(sys.argv[1]), vocabulary, seed=0, dim=int(sys.argv[2])))
"""


def read_error(path: Path, dim: int = 3) -> str:
    """Reads `path` as the embed stage would, within the bounds; its one error line."""
    return one_error(run_bounded(["-c", READ, str(path), str(dim)]))


def test_a_gigabyte_line_in_a_small_vec_gz_is_refused_at_the_cap(tmp_path):
    path = tmp_path / "vectors.vec.gz"
    with gzip.open(path, "wb", compresslevel=9) as handle:
        for _ in range(1024):
            handle.write(b"7" * MB)
    assert path.stat().st_size < 2 * MB
    assert read_error(path) == f"error: {path}: line 1 is over 1048576 characters"


@pytest.mark.parametrize("header", ["2 100000000\n", "dog" + " 0.5" * 100 + "\n"],
                         ids=["header", "first_line"])
def test_a_dimension_other_than_embed_dim_is_refused_before_allocating(tmp_path, header):
    path = tmp_path / "vectors.vec"
    path.write_text(header + "dog 1 2 3\n")
    found = 100_000_000 if header.startswith("2 ") else 100
    assert read_error(path) == f"error: {path}: vectors have {found} dimensions but embed.dim is 3"


def test_a_value_that_is_not_finite_is_refused(tmp_path):
    path = tmp_path / "vectors.vec"
    path.write_text("dog 1 2 3\ncat 4 nan 6\n")
    assert read_error(path) == f"error: {path}: line 2 holds a value that is not finite"


@pytest.mark.parametrize(("damage", "problem"), [
    ("truncated", "Compressed file ended before the end-of-stream marker was reached"),
    ("corrupt", "Error -3 while decompressing data: invalid bit length repeat"),
])
def test_a_damaged_vec_gz_is_named(tmp_path, damage, problem):
    data = gzip.compress("".join(f"word{i} 1 2 3\n" for i in range(5000)).encode())
    path = tmp_path / "vectors.vec.gz"
    if damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    else:
        path.write_bytes(data[:20] + b"\xff" * 8 + data[28:])
    assert read_error(path) == f"error: {path}: cannot read word vectors: {problem}"


@pytest.fixture(scope="module")
def model_bytes(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("bin") / "model.bin"
    train_bin(path, dim=3)
    return path.read_bytes()


def dictionary_end(data: bytes) -> int:
    """The offset just past a .bin's dictionary entries (its words, counts and types)."""
    size = struct.unpack_from("<i", data, 64)[0]
    offset = 64 + 28
    for _ in range(size):
        offset = data.index(b"\0", offset) + 1 + 9
    return offset


@pytest.mark.parametrize("case", ["truncated_after_words", "negative_words", "huge_dim"])
def test_a_damaged_fasttext_bin_is_named(tmp_path, model_bytes, case):
    data = bytearray(model_bytes)
    if case == "truncated_after_words":
        data = data[:dictionary_end(model_bytes)]
        problem = "the file ends inside its header or dictionary"
    elif case == "negative_words":
        data[68:72] = struct.pack("<i", -1)
        problem = f"impossible dictionary counts ({struct.unpack_from('<i', data, 64)[0]} entries, " \
                  "-1 words, -1 pruned rows)"
    else:
        data[8:12] = struct.pack("<i", 100_000_000)
        words, bucket = struct.unpack_from("<i", data, 68)[0], struct.unpack_from("<i", data, 40)[0]
        problem = f"input matrix is {words + bucket} x 3 for {words} words of dimension 100000000"
    path = tmp_path / "vectors.bin"
    path.write_bytes(bytes(data))
    assert read_error(path) == f"error: {path}: not a readable fastText .bin model: {problem}"


@pytest.mark.parametrize(("offset", "value", "problem"), [
    (8, b"\x01\x00", "File 'wiki.vec' is encrypted, password required for extraction"),
    (10, b"\x63\x00", "That compression method is not supported"),
], ids=["encrypted", "unknown_method"])
def test_a_vec_zip_member_zipfile_cannot_read_is_named(tmp_path, offset, value, problem):
    path = patched_zip(tmp_path / "vectors.zip", {"wiki.vec": b"dog 1 2 3\n"}, offset, value)
    assert read_error(path) == f"error: {path}: cannot read word vectors: {problem}"
