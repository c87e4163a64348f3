"""Stage embed: the embedding matrix for the vocabulary, from fastText trained on the captions or
from the pretrained vectors that the pretrained stage placed in data/pretrained/vectors."""

from __future__ import annotations

from captioner.core import quiet_start

quiet_start.install()

from captioner.core import params
from captioner.core.errors import run_stage
from captioner.core.files import atomic_path, read_json, read_jsonl, write_json, write_npy
from captioner.core.paths import EMBED_RECORD, EMBEDDINGS, EMBEDDINGS_DIR, VOCABULARY, split_file
from captioner.core.placed import VECTORS, read_placed
from captioner.core.text import clean
from captioner.inputs.embeddings import matrix_from_file, matrix_from_model, train_fasttext


def main() -> None:
    config = params.load(params.EmbedParams)
    vocabulary = read_json(VOCABULARY)
    vectors = read_placed(VECTORS)
    if vectors.path is None:
        sentences = [clean(text) for record in read_jsonl(split_file("train"))
                     for text in record["captions"]]
        model = train_fasttext(sentences, config.dim, config.epoch, config.minn, config.maxn)
        matrix, coverage = matrix_from_model(model, vocabulary, config.seed)
    else:
        matrix, coverage = matrix_from_file(vectors.path, vocabulary, config.seed, config.dim)
    with atomic_path(EMBEDDINGS_DIR) as folder:
        folder.mkdir()
        write_npy(folder / EMBEDDINGS.name, matrix)
    write_json(EMBED_RECORD, {"source": vectors.describe(), "dim": int(matrix.shape[1]),
                               "vocab_size": int(matrix.shape[0]), "coverage": round(coverage, 5)})
    print(f"embed: {matrix.shape[0]} x {matrix.shape[1]} matrix, coverage {coverage:.1%}")


if __name__ == "__main__":
    run_stage(main)
