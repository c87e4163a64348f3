"""Stage tokenize: reads the captions (in the format `tokenize.format` names), keeps those of the
images present, splits them, builds the vocabulary from the training captions and encodes the splits."""

from __future__ import annotations

from captioner import params
from captioner.dataset import summary, tokenize_collection
from captioner.errors import run_stage
from captioner.files import atomic_path, write_json
from captioner.paths import CAPTIONS, DATA_METRICS, RAW_IMAGES, RAW_TEXT


def main() -> None:
    config = params.load(params.TokenizeParams)
    with atomic_path(CAPTIONS) as folder:
        folder.mkdir()
        metrics = tokenize_collection(config, RAW_IMAGES, RAW_TEXT, folder)
    write_json(DATA_METRICS, metrics)
    print(summary(metrics))


if __name__ == "__main__":
    run_stage(main)
