"""Image files in, one CNN feature vector per image out, through a streaming tf.data pipeline; with
`grid`, also the feature map it pools: one vector per region of the photo (7x7 for Lite0).

Decoding runs in parallel tf.data workers (Pillow releases the GIL while it decodes and resizes),
batches are prefetched so decoding overlaps the forward pass, and memory stays flat however many
images there are: the stage writes the grid (about 125 KB an image) straight into a memory-mapped
file. An image that cannot be decoded is reported with its reason, never fatal here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import tensorflow as tf
from tqdm import tqdm

from captioner.core.errors import PipelineError
from captioner.core.files import atomic_path, write_json, write_npy
from captioner.core.image_files import image_id, list_images
from captioner.core.paths import MIRRORED_PREFIX
from captioner.inputs.backbones import build_backbone, feature_dim, with_grid
from captioner.inputs.pixels import PIXELS_SHAPE, BadImage, load_pixels

# backbone.json: what rebuilds the same extractor; batch_size too, as it fixes the CNN's input shape.
DESCRIPTION_KEYS = {"backbone": str, "weights": str, "dim": int, "batch_size": int}


def _decode_or_reason(path: bytes) -> tuple[np.ndarray, bytes]:
    try:
        return load_pixels(path.decode()), b""
    except BadImage as error:
        return np.zeros(PIXELS_SHAPE, dtype=np.uint8), str(error).encode()


def _decode_op(path: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    pixels, reason = tf.numpy_function(_decode_or_reason, [path], [tf.uint8, tf.string],
                                       stateful=False)
    pixels.set_shape(PIXELS_SHAPE)
    reason.set_shape(())
    return pixels, reason


def image_batches(paths: Sequence[Path | str], batch_size: int,
                  decode_threads: int) -> tf.data.Dataset:
    """Streams (pixels uint8 [b, 224, 224, 3], reason string [b]) batches in the order of `paths`.

    A reason is empty for a decoded image; for a bad one it says why, and its pixels are zeros.
    """
    options = tf.data.Options()
    options.threading.private_threadpool_size = decode_threads
    return (
        tf.data.Dataset.from_tensor_slices([str(path) for path in paths])
        .map(_decode_op, num_parallel_calls=decode_threads, deterministic=True)
        .batch(batch_size)
        .prefetch(2)
        .with_options(options)
    )


@dataclasses.dataclass(frozen=True)
class Extraction:
    """Features of the decodable images (float16, rows in input order) and the rest with reasons."""

    features: np.ndarray
    paths: list[Path]
    bad: list[tuple[Path, str]]


class FeatureExtractor:
    """Computes feature vectors for image files with one backbone, its weights and preprocessing;
    with `grid`, its features are the regions of the pooled feature map, (regions, dim) an image.

    The CNN always runs on exactly `batch_size` images: a short batch is padded with black images
    whose rows are dropped. oneDNN picks its kernels per batch shape, and kernels differ in the last
    float32 bits, so one fixed shape gives an image the same kernels however many images a run has
    (the stage's thousands or predict's one); its features then agree within float16 rounding
    (bit for bit on the CPUs tested, though nothing promises it for another row position).
    """

    def __init__(self, backbone: str, weights: str, batch_size: int,
                 decode_threads: int = 2, grid: bool = False) -> None:
        self.backbone = backbone
        self.weights = weights
        self.batch_size = batch_size
        self.decode_threads = decode_threads
        self.grid = grid
        self.model = build_backbone(backbone, weights)
        if grid:
            self.model = with_grid(self.model)
        self.dim = feature_dim(self.model)
        self.feature_shape = tuple(self.model.output_shape[-1][1:] if grid
                                   else self.model.output_shape[1:])
        # Traced once per batch shape: batch_size, and the service's smaller ones.
        self._forward = tf.function(
            lambda pixels: self.model(tf.cast(pixels, tf.float32), training=False))

    @classmethod
    def from_mapping(cls, description: object, source: str, decode_threads: int = 2,
                     grid: bool = False) -> FeatureExtractor:
        """Rebuilds the extractor a `description()` dict describes; errors name `source`."""
        if not isinstance(description, Mapping):
            raise PipelineError(f"{source}: backbone description must be a JSON object")
        for key, kind in DESCRIPTION_KEYS.items():
            value = description.get(key)
            if not isinstance(value, kind) or isinstance(value, bool):
                raise PipelineError(f"{source}: backbone description needs {key!r} "
                                    f"({kind.__name__}), got {value!r}")
        if description["batch_size"] < 1:
            raise PipelineError(f"{source}: batch_size must be >= 1, got "
                                f"{description['batch_size']}")
        try:
            extractor = cls(description["backbone"], description["weights"],
                            description["batch_size"], decode_threads, grid)
        except PipelineError as error:
            raise PipelineError(f"{source}: {error}") from None
        if extractor.dim != description["dim"]:
            raise PipelineError(f"{source}: dim {description['dim']} does not match the "
                                f"{extractor.backbone} output ({extractor.dim})")
        return extractor

    def description(self) -> dict[str, str | int]:
        """What from_mapping needs to rebuild this extractor: DESCRIPTION_KEYS' values."""
        return {"backbone": self.backbone, "weights": self.weights, "dim": self.dim,
                "batch_size": self.batch_size}

    def features_of(self, pixels: tf.Tensor) -> tf.Tensor:
        """The features of float32 pixels as a TensorFlow op (for a graph of its own)."""
        outputs = self.model(pixels, training=False)
        return outputs[-1] if self.grid else outputs

    def forward_all(self, pixels: np.ndarray | tf.Tensor, shape: int | None = None) -> list[np.ndarray]:
        """The pooled features (float16) of up to batch_size decoded uint8 images shaped
        (n, 224, 224, 3), and with `grid` their regions, computed in a batch of `shape` images
        (default batch_size)."""
        count, shape = len(pixels), shape or self.batch_size
        if not count <= shape <= self.batch_size:
            raise ValueError(f"{count} images in a forward pass of {shape}, batch_size "
                             f"{self.batch_size}")
        padded = tf.pad(pixels, [[0, shape - count], [0, 0], [0, 0], [0, 0]])
        outputs = self._forward(padded)
        return [output.numpy()[:count].astype(np.float16)
                for output in (outputs if self.grid else [outputs])]

    def forward(self, pixels: np.ndarray | tf.Tensor, shape: int | None = None) -> np.ndarray:
        """This extractor's features (float16) of decoded images: see forward_all."""
        return self.forward_all(pixels, shape)[-1]

    def _batches(self, paths: Sequence[Path | str], progress: bool,
                 mirrored: bool = False) -> Iterator[tuple[list[np.ndarray], list[str]]]:
        """Every batch's forward_all outputs (with `mirrored`, then those of the photos mirrored
        left to right) and reasons (empty for a decoded image), in order."""
        if not paths:
            return
        with tqdm(total=len(paths), unit="img", disable=not progress, desc="features") as bar:
            for pixels, reasons in image_batches(paths, self.batch_size, self.decode_threads):
                outputs = self.forward_all(pixels)
                if mirrored:
                    outputs += self.forward_all(tf.reverse(pixels, axis=[2]))
                yield outputs, [reason.decode() for reason in reasons.numpy()]
                bar.update(len(pixels))

    def extract(self, paths: Sequence[Path | str], progress: bool = False) -> Extraction:
        """Computes features for `paths`; undecodable images are left out and listed in `bad`."""
        features = np.zeros((len(paths), *self.feature_shape), dtype=np.float16)
        reasons = self._fill(paths, [features], progress)
        good = np.array([not reason for reason in reasons], dtype=bool)
        return _extraction(features if good.all() else features[good], paths, reasons)

    def _fill(self, paths: Sequence[Path | str], targets: list[np.ndarray], progress: bool,
              mirrored: bool = False) -> list[str]:
        """Writes the features of `paths` into the `targets` (pooled, then regions, then with
        `mirrored` the same of the mirrored photos; or only this extractor's features); returns
        each image's reason."""
        reasons: list[str] = []
        for outputs, batch_reasons in self._batches(paths, progress, mirrored):
            start = len(reasons)
            for target, output in zip(targets, outputs[-len(targets):], strict=True):
                target[start:start + len(output)] = output
            reasons.extend(batch_reasons)
        return reasons

    def extract_to_folder(self, paths: Sequence[Path], images_dir: Path, folder: Path,
                          max_bad_fraction: float, mirrored: bool = False,
                          progress: bool = False) -> Extraction:
        """The stage's extraction: replaces `folder` at once by features.npy, images.json (ids
        relative to `images_dir`) and backbone.json, with `grid` grid.npy (float16, images x
        regions x dim, written memory-mapped), and with `mirrored` the same of every photo
        mirrored left to right (MIRRORED_PREFIX + each name); fails as check_bad_fraction says."""
        names = ["features.npy", *(["grid.npy"] if self.grid else [])]
        if mirrored:
            names += [MIRRORED_PREFIX + name for name in names]
        with atomic_path(folder) as temporary:
            temporary.mkdir()
            def target(name: str) -> np.ndarray:
                if name.endswith("features.npy"):
                    return np.zeros((len(paths), self.dim), dtype=np.float16)
                return np.lib.format.open_memmap(temporary / f"{name}.partial", "w+", np.float16,
                                                 (len(paths), *self.feature_shape))

            targets = [target(name) for name in names]
            reasons = self._fill(paths, targets, progress, mirrored)
            good = np.array([not reason for reason in reasons], dtype=bool)
            extraction = _extraction(targets[0] if good.all() else targets[0][good], paths, reasons)
            check_bad_fraction(extraction, images_dir, len(paths), max_bad_fraction)
            for name, target in zip(names, targets, strict=True):
                if isinstance(target, np.memmap):
                    _keep_rows(target, good, temporary / name)
                else:
                    write_npy(temporary / name, target[good])
            write_json(temporary / "images.json",
                       [image_id(path, images_dir) for path in extraction.paths])
            write_json(temporary / "backbone.json", self.description())
        return extraction


def _extraction(features: np.ndarray, paths: Sequence[Path | str], reasons: list[str]) -> Extraction:
    return Extraction(
        features=features,
        paths=[Path(path) for path, reason in zip(paths, reasons, strict=True) if not reason],
        bad=[(Path(path), reason) for path, reason in zip(paths, reasons, strict=True) if reason],
    )


# Rows copied at once when bad images' rows are dropped from a memory-mapped grid.
COPY_ROWS = 1024


def _keep_rows(written: np.memmap, good: np.ndarray, path: Path) -> None:
    """Saves the `good` rows of a memory-mapped .npy at `path`, the file it was written to gone."""
    source = Path(written.filename)
    written.flush()
    if good.all():
        del written
        source.rename(path)
        return
    kept = np.flatnonzero(good)
    target = np.lib.format.open_memmap(path, "w+", written.dtype, (len(kept), *written.shape[1:]))
    for start in range(0, len(kept), COPY_ROWS):
        target[start:start + COPY_ROWS] = written[kept[start:start + COPY_ROWS]]
    target.flush()
    del written, target
    source.unlink()


def find_images(root: Path) -> list[Path]:
    """The image files under `root` in id order; refuses a missing or image-less folder."""
    if not root.is_dir():
        raise PipelineError(f"{root}: image folder not found (run the download stage first)")
    paths = list_images(root)
    if not paths:
        raise PipelineError(f"{root}: no images")
    return paths


def check_bad_fraction(extraction: Extraction, root: Path, total: int, max_bad_fraction: float) -> None:
    """Fails when more than `max_bad_fraction` of the `total` images under `root` could not be decoded."""
    if len(extraction.bad) > max_bad_fraction * total:
        path, reason = extraction.bad[0]
        raise PipelineError(
            f"{root}: {len(extraction.bad)} of {total} images cannot be decoded, more than "
            f"extract_features.max_bad_fraction={max_bad_fraction} "
            f"(first: {image_id(path, root)}: {reason})"
        )
