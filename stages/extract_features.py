"""Stage extract_features: one ImageNet CNN feature vector per image of data/raw/images/.

Writes data/features/ (features.npy: float16 N x D, images.json: image ids in row order,
backbone.json: what rebuilds the same CNN at the same batch shape) as one atomic folder swap, and
metrics/features.json. Reads the images, the weights the pretrained stage placed in
data/pretrained/weights and the extract_features params.
"""

from __future__ import annotations

import sys
import time

from captioner import devices, params
from captioner.errors import run_stage
from captioner.features import Extraction, FeatureExtractor, check_bad_fraction, find_images
from captioner.files import atomic_path, write_json, write_npy
from captioner.image_files import image_id
from captioner.paths import FEATURES, FEATURES_METRICS, FEATURES_SPEED, RAW_IMAGES
from captioner.pretrained import WEIGHTS, read_placed


def write_features(extraction: Extraction, description: dict[str, str | int]) -> None:
    """Writes features.npy, images.json and backbone.json, replacing the folder in one step."""
    with atomic_path(FEATURES) as folder:
        folder.mkdir()
        write_npy(folder / "features.npy", extraction.features)
        write_json(folder / "images.json", [image_id(path, RAW_IMAGES) for path in extraction.paths])
        write_json(folder / "backbone.json", description)


def main() -> None:
    settings = params.load(params.ExtractFeaturesParams)
    print(f"extract_features: devices: {devices.describe()}", flush=True)
    paths = find_images(RAW_IMAGES)
    weights = read_placed(WEIGHTS)
    extractor = FeatureExtractor(settings.backbone, weights.builtin or str(weights.path),
                                 settings.batch_size, settings.decode_threads)
    start = time.perf_counter()
    extraction = extractor.extract(paths, progress=True)
    images_per_s = len(paths) / (time.perf_counter() - start)
    for path, reason in extraction.bad:
        print(f"warning: {path}: left out: {reason}", file=sys.stderr)
    check_bad_fraction(extraction, RAW_IMAGES, len(paths), settings.max_bad_fraction)
    write_features(extraction, extractor.description())
    write_json(FEATURES_METRICS, {
        "backbone": settings.backbone,
        "weights": weights.describe(),
        "dim": extractor.dim,
        "count": len(extraction.paths),
        "bad_images": [{"file": image_id(path, RAW_IMAGES), "reason": reason}
                       for path, reason in extraction.bad],
    })
    write_json(FEATURES_SPEED, {"images_per_s": round(images_per_s, 1)})
    print(f"extract_features: {len(extraction.paths)} images x {extractor.dim} -> "
          f"{FEATURES}/features.npy, {len(extraction.bad)} bad, {images_per_s:.1f} images/s")


if __name__ == "__main__":
    run_stage(main)
