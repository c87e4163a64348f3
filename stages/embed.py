"""Stage embed: the embedding matrix for the vocabulary, from fastText trained on the captions or
from pretrained vectors."""

from __future__ import annotations

from pathlib import Path

from captioner import params
from captioner.embeddings import matrix_from_model, matrix_from_source, train_fasttext
from captioner.errors import PipelineError, run_stage
from captioner.files import atomic_path, read_json, read_jsonl, write_json, write_npy
from captioner.paths import EMBED_METRICS, EMBEDDINGS, EMBEDDINGS_DIR, VOCABULARY, split_file
from captioner.text import clean


def main() -> None:
    config = params.load(params.EmbedParams)
    vocabulary = read_json(VOCABULARY)
    if config.source == "train":
        sentences = [clean(text) for record in read_jsonl(split_file("train"))
                     for text in record["captions"]]
        model = train_fasttext(sentences, config.dim, config.epoch, config.minn, config.maxn)
        matrix, coverage = matrix_from_model(model, vocabulary, config.seed)
    else:
        source = Path(config.source)
        if not source.is_file():
            raise PipelineError(f"embed.source: {source} is not a file (use 'train' or a path)")
        matrix, coverage = matrix_from_source(source, vocabulary, config.seed)
        if matrix.shape[1] != config.dim:
            raise PipelineError(
                f"{source}: vectors have {matrix.shape[1]} dimensions but embed.dim is {config.dim}"
            )
    with atomic_path(EMBEDDINGS_DIR) as folder:
        folder.mkdir()
        write_npy(folder / EMBEDDINGS.name, matrix)
    write_json(EMBED_METRICS, {"source": config.source, "dim": int(matrix.shape[1]),
                         "vocab_size": int(matrix.shape[0]), "coverage": round(coverage, 5)})
    print(f"embed: {matrix.shape[0]} x {matrix.shape[1]} matrix, coverage {coverage:.1%}")


if __name__ == "__main__":
    run_stage(main)
