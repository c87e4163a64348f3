"""A lever's screening figure: the validation scores of trained models decoded with a beam, as the
issues screen levers (one seed, validation CIDEr at beam 3), without touching the test split.

Each model file is loaded with its vocabulary, given the validation images' pooled vectors or
regions as it reads them (from the project's data/features), decoded with the project's evaluate
settings at the given beam size, and scored against the references (BLEU-4 and CIDEr as
validation scores them during training). Prints one line per model and, last, one JSON object.

    python benchmarks/screen.py --project DIR [--beam 3] MODEL.keras [MODEL.keras ...]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from captioner.core import quiet_start  # noqa: E402

quiet_start.install()

from captioner.core import params  # noqa: E402
from captioner.core.errors import run_stage  # noqa: E402
from captioner.core.paths import FEATURES, split_file  # noqa: E402
from captioner.model import scoring  # noqa: E402
from captioner.model.artifacts import load_model  # noqa: E402
from captioner.model.decoding import Decoder  # noqa: E402
from captioner.model.network import reads_regions  # noqa: E402
from captioner.model.splits import load_features, load_split  # noqa: E402


def validation_figures(project: Path, model_path: Path, beam_size: int) -> dict[str, float]:
    """BLEU-4, CIDEr and distinct captions of `model_path` on the validation split of `project`."""
    config = params.load(params.EvaluateParams, project / "params.yaml")
    val = load_split(project / split_file("val"), load_features(project / FEATURES))
    trained = load_model(model_path)
    started = time.perf_counter()
    captions = Decoder.from_model(trained.model).captions(
        val.image_inputs(reads_regions(trained.model)),
        dataclasses.replace(config.decoding, beam_size=beam_size), trained.vocabulary,
        config.batch_size)
    seconds = time.perf_counter() - started
    references = {record["image"]: record["captions"] for record in val.records}
    scores = scoring.validation_scores(dict(zip(references, captions, strict=True)), references)
    return {**{name: round(value, 4) for name, value in scores.items()},
            "distinct": round(scoring.diversity(captions)["distinct_captions"], 4),
            "decode_s": round(seconds, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, required=True)
    parser.add_argument("--beam", type=int, default=3)
    parser.add_argument("models", type=Path, nargs="+")
    arguments = parser.parse_args()
    figures = {}
    for model in arguments.models:
        figures[str(model)] = validation_figures(arguments.project, model, arguments.beam)
        print(f"{model}: " + ", ".join(f"{name} {value}" for name, value in figures[str(model)].items()),
              flush=True)
    print(json.dumps(figures))


if __name__ == "__main__":
    run_stage(main)
