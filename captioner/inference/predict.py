"""`python -m captioner predict`: captions image files and folders with a trained model."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from captioner.core.params import DecodingSettings
from captioner.core.sources import undecodable_name
from captioner.inference.captioning import ImageCaptioner


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


def predict(images: list[str], model_path: Path, settings: DecodingSettings, batch_size: int,
            as_json: bool) -> int:
    """Prints the captions of `images` (files or folders), decoded with `settings`, `batch_size`
    at once; returns the exit code, 1 if any image was unusable (each one reported on stderr)."""
    captioner = ImageCaptioner(model_path, settings, batch_size)
    paths = image_paths(images)
    misnamed = {path: shown for path in paths if (shown := undecodable_name(str(path)))}
    paths = [path for path in paths if path not in misnamed]
    missing = [path for path in paths if not path.is_file()]
    extraction = captioner.extractor.extract([path for path in paths if path.is_file()])
    captions = captioner.caption_features(extraction.features)
    results = [{"image": str(path), "caption": caption.caption}
               for path, caption in zip(extraction.paths, captions, strict=True)]
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
            print(f"{result['image']}\t{result['caption']}")
    return 1 if misnamed or missing or extraction.bad else 0
