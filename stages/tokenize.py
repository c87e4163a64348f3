"""Stage tokenize: reads the captions (in the format `tokenize.format` names), keeps those of the
images present, splits them, builds the vocabulary from the training captions and encodes the splits."""

from __future__ import annotations

from captioner.core import quiet_start

quiet_start.install()

from captioner.captions.tokenize import summary, tokenize_collection
from captioner.core import params
from captioner.core.errors import run_stage
from captioner.core.files import atomic_path, write_json
from captioner.core.paths import CAPTIONS, RAW_IMAGES, RAW_TEXT, RAW_TEXT_SOURCE, TOKENIZE_RECORD


def main() -> None:
    config = params.load(params.TokenizeParams)
    with atomic_path(CAPTIONS) as folder:
        folder.mkdir()
        metrics = tokenize_collection(config, RAW_IMAGES, RAW_TEXT, folder, RAW_TEXT_SOURCE)
    write_json(TOKENIZE_RECORD, metrics)
    print(summary(metrics))


if __name__ == "__main__":
    run_stage(main)
