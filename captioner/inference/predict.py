"""`python -m captioner predict`: captions image files and folders with a trained model, and with
--attention-maps draws where each word of an attention model's captions looked."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from captioner.core.errors import PipelineError
from captioner.core.params import DecodingSettings
from captioner.core.paths import figure_name
from captioner.core.sources import undecodable_name
from captioner.inference.captioning import ImageCaptioner
from captioner.inputs.pixels import load_pixels
from captioner.model.attention_maps import attended_captions, attention_figure
from captioner.model.network import reads_regions


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


def map_name(position: int, path: Path) -> str:
    """An attention figure's file name: the image's place among those captioned, then its name."""
    return figure_name(position, path.name, digits=3)


def write_attention_maps(captioner: ImageCaptioner, paths: list[Path], regions: np.ndarray,
                         folder: Path) -> list[str]:
    """Draws each image's caption word by word over where it looked into `folder`; the files."""
    folder.mkdir(parents=True, exist_ok=True)
    attended = attended_captions(captioner.trained.model, regions, captioner.settings,
                                 captioner.trained.vocabulary, captioner.batch_size)
    written = []
    for position, (path, caption) in enumerate(zip(paths, attended, strict=True)):
        target = folder / map_name(position, path)
        attention_figure(load_pixels(path), caption).save(target)
        written.append(str(target))
    return written


def predict(images: list[str], model_path: Path, settings: DecodingSettings, batch_size: int,
            as_json: bool, attention_maps: Path | None = None) -> int:
    """Prints the captions of `images` (files or folders), decoded with `settings`, `batch_size`
    at once, and with `attention_maps` each one's figure's path beside it; returns the exit code,
    1 if any image was unusable (each one reported on stderr)."""
    if attention_maps is not None and attention_maps.exists() and not attention_maps.is_dir():
        raise PipelineError(f"--attention-maps {attention_maps}: not a folder")
    captioner = ImageCaptioner(model_path, settings, batch_size)
    if attention_maps is not None and not reads_regions(captioner.trained.model):
        raise PipelineError(f"{model_path}: has no attention decoder (train.decoder attention), "
                            "so no attention maps")
    paths = image_paths(images)
    misnamed = {path: shown for path in paths if (shown := undecodable_name(str(path)))}
    paths = [path for path in paths if path not in misnamed]
    missing = [path for path in paths if not path.is_file()]
    extraction = captioner.extractor.extract([path for path in paths if path.is_file()])
    captions = captioner.caption_features(extraction.features)
    results = [{"image": str(path), "caption": caption.caption}
               for path, caption in zip(extraction.paths, captions, strict=True)]
    if attention_maps is not None:
        figures = write_attention_maps(captioner, extraction.paths, extraction.features,
                                       attention_maps)
        for result, figure in zip(results, figures, strict=True):
            result["attention_map"] = figure
    for shown in misnamed.values():
        print(f"error: {shown}: the file name is not UTF-8; rename it", file=sys.stderr)
    for path in missing:
        print(f"error: {path}: no such file", file=sys.stderr)
    for path, reason in extraction.bad:
        print(f"error: {path}: {reason}", file=sys.stderr)
    if as_json:
        print(json.dumps(results, indent=2))
    else:
        for result in results:
            print("\t".join(result.values()))
    return 1 if misnamed or missing or extraction.bad else 0
