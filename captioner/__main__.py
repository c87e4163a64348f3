"""Command line: `python -m captioner predict IMAGE_OR_FOLDER ...` captions images with a trained model."""

from __future__ import annotations

from captioner.core import quiet_start

quiet_start.install()

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from captioner.core import params
from captioner.core.errors import PipelineError
from captioner.core.paths import BEST_MODEL, PARAMS_FILE
from captioner.core.sources import undecodable_name
from captioner.core.text import decode
from captioner.inputs.features import FeatureExtractor
from captioner.model.artifacts import CaptionModel, load_model, model_info_path
from captioner.model.decoding import Decoder


def image_paths(arguments: list[str]) -> list[Path]:
    """The given files, and the files of the given folders (sorted, hidden ones skipped)."""
    paths = []
    for argument in map(Path, arguments):
        if argument.is_dir():
            paths.extend(sorted(p for p in argument.iterdir()
                                if p.is_file() and not p.name.startswith(".")))
        else:
            paths.append(argument)
    return paths


# Images decoded together outside a project, where no evaluate params say; it changes only speed.
DECODE_BATCH_SIZE = 64


def model_extractor(trained: CaptionModel, model_path: Path) -> FeatureExtractor:
    """The feature extractor (backbone, weights, batch shape) a model was trained with, refused
    when the model cannot use its features."""
    extractor = FeatureExtractor.from_mapping(trained.backbone, str(model_info_path(model_path)))
    expected_dim = trained.model.inputs[0].shape[-1]  # the image features
    if extractor.dim != expected_dim:
        raise PipelineError(f"{model_path}: expects {expected_dim}-d image features but "
                            f"{extractor.backbone} gives {extractor.dim}")
    return extractor


def decoding_settings(arguments: argparse.Namespace) -> params.EvaluateParams:
    """The evaluate params of the project in the current folder, overridden by the given flags.

    Without a params.yaml here, all three decoding flags must be given.
    """
    flags = {"beam_size": arguments.beam_size, "length_penalty": arguments.length_penalty,
             "max_length": arguments.max_length}
    given = {key: value for key, value in flags.items() if value is not None}
    if PARAMS_FILE.is_file():
        return dataclasses.replace(params.load(params.EvaluateParams), **given)
    if len(given) < len(flags):
        raise PipelineError(f"{PARAMS_FILE}: not found in this folder; run predict in the project "
                            "folder (it decodes as the evaluate stage does) or give --beam-size, "
                            "--length-penalty and --max-length")
    return params.EvaluateParams(**given, batch_size=DECODE_BATCH_SIZE, report_images=0,
                                 sample_images=1)


def predict(arguments: argparse.Namespace) -> int:
    """Captions the images named in `arguments`; returns the exit code (1 if any was unusable)."""
    settings = decoding_settings(arguments)
    trained = load_model(arguments.model)
    extractor = model_extractor(trained, arguments.model)
    paths = image_paths(arguments.images)
    misnamed = {path: shown for path in paths if (shown := undecodable_name(str(path)))}
    paths = [path for path in paths if path not in misnamed]
    missing = [path for path in paths if not path.is_file()]
    extraction = extractor.extract([path for path in paths if path.is_file()])
    captions = Decoder.from_model(trained.model).caption_ids(
        extraction.features, settings.beam_size, settings.max_length, settings.length_penalty,
        settings.batch_size)
    results = [{"image": str(path), "caption": decode(ids, trained.vocabulary)}
               for path, ids in zip(extraction.paths, captions, strict=True)]
    for shown in misnamed.values():
        print(f"error: {shown}: the file name is not UTF-8; rename it", file=sys.stderr)
    for path in missing:
        print(f"error: {path}: no such file", file=sys.stderr)
    for path, reason in extraction.bad:
        print(f"error: {path}: {reason}", file=sys.stderr)
    if arguments.json:
        print(json.dumps(results, indent=2))
    else:
        for result in results:
            print(f"{result['image']}\t{result['caption']}")
    return 1 if misnamed or missing or extraction.bad else 0


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m captioner", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    command = commands.add_parser("predict", help="caption images with a trained model")
    command.add_argument("images", nargs="+", help="image files or folders of images")
    command.add_argument("--model", type=Path, default=BEST_MODEL,
                         help="a model written by the train stage (default: %(default)s)")
    for flag, kind, meaning in (("--beam-size", int, "1 is greedy"),
                                ("--length-penalty", float, "0 ranks by total log-probability"),
                                ("--max-length", int, "most words")):
        command.add_argument(flag, type=kind, help=f"{meaning} (default: the evaluate params "
                             f"in {PARAMS_FILE})")
    command.add_argument("--json", action="store_true", help="print a JSON list")
    arguments = parser.parse_args()
    if (arguments.beam_size is not None and arguments.beam_size < 1) or (
            arguments.max_length is not None and arguments.max_length < 1):
        parser.error("--beam-size and --max-length must be at least 1")
    if arguments.length_penalty is not None and arguments.length_penalty < 0:
        parser.error("--length-penalty must be at least 0")
    try:
        raise SystemExit(predict(arguments))
    except PipelineError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
