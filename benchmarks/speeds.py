"""Speeds that no stage reports, measured on a project directory where the pipeline has run: the
seed's training scheme (benchmarks/seed_scheme.py), the feature CNN's raw forward pass on
in-memory pixels (benchmarks/features.py) and greedy decoding of the test images.

Decoding is timed as the evaluate stage times its beam search (Decoder.timed_captions), over all
test images with the evaluate params' settings but a beam of one. Prints one line per figure and,
as its last line, the figures as one JSON object.

    python benchmarks/speeds.py --project DIR [--seed-seconds 60]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.features import forward_throughput  # noqa: E402
from benchmarks.seed_scheme import seed_scheme_tokens_per_s  # noqa: E402
from captioner.core import quiet_start  # noqa: E402

quiet_start.install()

from captioner.core import params  # noqa: E402
from captioner.core.errors import run_stage  # noqa: E402
from captioner.core.image_files import list_images  # noqa: E402
from captioner.core.paths import BEST_MODEL, FEATURES, RAW_IMAGES, split_file  # noqa: E402
from captioner.model.artifacts import load_model  # noqa: E402
from captioner.model.decoding import Decoder  # noqa: E402
from captioner.model.splits import load_features, load_split  # noqa: E402


def greedy_decode_images_per_s(project: Path) -> float:
    """Test images captioned per second by the trained model with beam size 1."""
    config = params.load(params.EvaluateParams, project / "params.yaml")
    trained = load_model(project / BEST_MODEL)
    test = load_split(project / split_file("test"), load_features(project / FEATURES))
    _, images_per_s = Decoder.from_model(trained.model).timed_captions(
        test.features, dataclasses.replace(config.decoding, beam_size=1), trained.vocabulary,
        config.batch_size)
    return images_per_s


def raw_forward_images_per_s(project: Path) -> float:
    """Images per second of the feature CNN alone, as the project's params configure it."""
    settings = params.load(params.ExtractFeaturesParams, project / "params.yaml")
    images_per_s, _ = forward_throughput(settings, list_images(project / RAW_IMAGES))
    return images_per_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, default=Path("."),
                        help="a project directory on which the whole pipeline has run")
    parser.add_argument("--seed-seconds", type=float, default=60.0,
                        help="timing budget of the seed scheme")
    arguments = parser.parse_args()
    figures = {
        "seed_scheme_tokens_per_s": seed_scheme_tokens_per_s(arguments.project, arguments.seed_seconds),
        "raw_forward_images_per_s": raw_forward_images_per_s(arguments.project),
        "greedy_decode_images_per_s": greedy_decode_images_per_s(arguments.project),
    }
    for name, value in figures.items():
        print(f"{name}: {value:.1f}")
    print(json.dumps(figures))


if __name__ == "__main__":
    run_stage(main)
