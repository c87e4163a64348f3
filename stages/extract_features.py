"""Stage extract_features: one ImageNet CNN feature vector per image of data/raw/images/, into
data/features/ (features.npy: float16 N x D, images.json: image ids in row order, backbone.json:
what rebuilds the same CNN), with the weights that data/pretrained/weights.json names; with
extract_features.grid, also the feature map's regions (grid.npy: float16 N x R x D), which the
attention decoder reads; with extract_features.mirrored, the same of every photo mirrored left to
right (mirrored_features.npy, mirrored_grid.npy), a second view for training."""

from __future__ import annotations

from captioner.core import quiet_start

quiet_start.install()

import sys
import time

from captioner.core import devices, params
from captioner.core.errors import run_stage
from captioner.core.files import write_json
from captioner.core.image_files import image_id
from captioner.core.paths import FEATURES, FEATURES_RECORD, FEATURES_SPEED, RAW_IMAGES
from captioner.core.placed import WEIGHTS, read_placed
from captioner.inputs.features import FeatureExtractor, find_images


def main() -> None:
    settings = params.load(params.ExtractFeaturesParams)
    print(f"extract_features: devices: {devices.describe()}", flush=True)
    paths = find_images(RAW_IMAGES)
    weights = read_placed(WEIGHTS)
    extractor = FeatureExtractor(settings.backbone, weights.builtin or str(weights.path),
                                 settings.batch_size, settings.decode_threads, settings.grid)
    start = time.perf_counter()
    extraction = extractor.extract_to_folder(paths, RAW_IMAGES, FEATURES, settings.max_bad_fraction,
                                             settings.mirrored, progress=True)
    images_per_s = len(paths) / (time.perf_counter() - start)
    for path, reason in extraction.bad:
        print(f"warning: {path}: left out: {reason}", file=sys.stderr)
    write_json(FEATURES_RECORD, {
        "backbone": settings.backbone,
        "weights": weights.describe(),
        "dim": extractor.dim,
        "grid": list(extractor.feature_shape) if settings.grid else None,
        "mirrored": settings.mirrored,
        "count": len(extraction.paths),
        "bad_images": [{"file": image_id(path, RAW_IMAGES), "reason": reason}
                       for path, reason in extraction.bad],
    })
    write_json(FEATURES_SPEED, {"images_per_s": round(images_per_s, 1)})
    grid = f" and x {extractor.feature_shape[0]} regions -> grid.npy" if settings.grid else ""
    grid += ", and of the mirrored photos" if settings.mirrored else ""
    print(f"extract_features: {len(extraction.paths)} images x {extractor.dim} -> "
          f"{FEATURES}/features.npy{grid}, {len(extraction.bad)} bad, {images_per_s:.1f} images/s")


if __name__ == "__main__":
    run_stage(main)
