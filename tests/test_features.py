"""Tests for image decoding, the feature extractor and the extract_features stage."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
import tensorflow as tf
import yaml
from PIL import Image

from captioner.core.errors import PipelineError
from captioner.core.files import read_json, read_npy
from captioner.inference.captioning import cnn_shape
from captioner.inputs.features import Extraction, FeatureExtractor, check_bad_fraction, image_batches
from captioner.inputs.pixels import BACKGROUND, BadImage, load_pixels
from stages import extract_features
from tests.helpers.images import (
    BLUE,
    GREEN,
    RED,
    YELLOW,
    write_undecodable_images,
    write_unusual_images,
)
from tests.helpers.project import place_builtin_pretrained

ORIENTATION_TAG = 0x0112


def _red_left_blue_right(width: int = 64, height: int = 32) -> Image.Image:
    pixels = np.zeros((height, width, 3), np.uint8)
    pixels[:, : width // 2] = RED
    pixels[:, width // 2:] = BLUE
    return Image.fromarray(pixels)


@pytest.fixture(scope="module")
def extractor():
    return FeatureExtractor("efficientnet_lite0", "imagenet", batch_size=2, decode_threads=2)


def test_unusual_formats_decode_to_the_right_colours(tmp_path):
    for name, colour in write_unusual_images(tmp_path).items():
        pixels = load_pixels(tmp_path / name)
        assert pixels.shape == (224, 224, 3) and pixels.dtype == np.uint8
        np.testing.assert_allclose(pixels.reshape(-1, 3).mean(0), colour, atol=4, err_msg=name)


def test_exif_orientation_is_applied(tmp_path):
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = 6  # shown rotated 90 degrees clockwise: the left edge goes on top
    _red_left_blue_right().save(tmp_path / "rotated.jpg", exif=exif.tobytes(), quality=95)

    pixels = load_pixels(tmp_path / "rotated.jpg").astype(int)

    np.testing.assert_allclose(pixels[:100].reshape(-1, 3).mean(0), RED, atol=6)
    np.testing.assert_allclose(pixels[124:].reshape(-1, 3).mean(0), BLUE, atol=6)


def _quadrants(width: int, height: int) -> Image.Image:
    """Red top left, blue top right, green bottom left, yellow bottom right."""
    pixels = np.zeros((height, width, 3), np.uint8)
    top, left = slice(0, height // 2), slice(0, width // 2)
    bottom, right = slice(height // 2, height), slice(width // 2, width)
    for rows, columns, colour in ((top, left, RED), (top, right, BLUE), (bottom, left, GREEN),
                                  (bottom, right, YELLOW)):
        pixels[rows, columns] = colour
    return Image.fromarray(pixels)


def _mean_colour(pixels: np.ndarray) -> np.ndarray:
    return pixels.reshape(-1, 3).astype(float).mean(0)


# EXIF orientation -> the stored quadrants' colours as shown: top left, top right, bottom left,
# bottom right. 6 is a phone held upright: the sensor's left edge is the picture's top.
SHOWN_QUADRANTS = {3: (YELLOW, GREEN, BLUE, RED), 6: (GREEN, RED, YELLOW, BLUE),
                   8: (BLUE, YELLOW, RED, GREEN)}


@pytest.mark.parametrize("orientation", SHOWN_QUADRANTS)
def test_phone_photo_is_decoded_upright(tmp_path, orientation):
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = orientation
    _quadrants(4000, 3000).save(tmp_path / "phone.jpg", exif=exif.tobytes(), quality=90)

    pixels = load_pixels(tmp_path / "phone.jpg")

    assert pixels.shape == (224, 224, 3)
    corners = [pixels[rows, columns] for rows in (slice(8, 104), slice(120, 216))
               for columns in (slice(8, 104), slice(120, 216))]
    for corner, colour in zip(corners, SHOWN_QUADRANTS[orientation], strict=True):
        np.testing.assert_allclose(_mean_colour(corner), colour, atol=6)


def test_coco_sized_photo_is_squashed_whole_edges_kept(tmp_path):
    pixels = np.full((480, 640, 3), GREEN, np.uint8)
    pixels[:, :80], pixels[:, -80:] = BLUE, YELLOW  # the bands a centre crop would cut off
    pixels[:60, 80:-80] = RED
    Image.fromarray(pixels).save(tmp_path / "coco.jpg", quality=95)

    decoded = load_pixels(tmp_path / "coco.jpg")

    assert decoded.shape == (224, 224, 3)
    # 80 of 640 columns are 28 of 224; 60 of 480 rows are 28 of 224.
    np.testing.assert_allclose(_mean_colour(decoded[:, :24]), BLUE, atol=6)
    np.testing.assert_allclose(_mean_colour(decoded[:, -24:]), YELLOW, atol=6)
    np.testing.assert_allclose(_mean_colour(decoded[:24, 32:-32]), RED, atol=6)
    np.testing.assert_allclose(_mean_colour(decoded[32:, 32:-32]), GREEN, atol=6)


def _half_transparent(mode: str) -> tuple[Image.Image, tuple[int, int, int]]:
    """An image whose right half is fully transparent over a colour that must not show, and the
    colour its left half must decode to."""
    if mode == "RGBA":  # left half red at alpha 128: half red, half the white background
        pixels = np.zeros((40, 40, 4), np.uint8)
        pixels[:, :20], pixels[:, 20:] = (*RED, 128), (*BLUE, 0)
        return Image.fromarray(pixels, "RGBA"), (255, 127, 127)
    if mode == "LA":
        pixels = np.zeros((40, 40, 2), np.uint8)
        pixels[:, :20], pixels[:, 20:] = (40, 255), (0, 0)
        return Image.fromarray(pixels, "LA"), (40, 40, 40)
    indices = np.zeros((40, 40), np.uint8)
    indices[:, 20:] = 1
    image = Image.fromarray(indices, "L").convert("P")
    image.putpalette([*RED, *BLUE])
    if mode == "P":
        image.info["transparency"] = 1
        return image, RED
    rgb = image.convert("RGB")  # an RGB PNG's single transparent colour (tRNS)
    rgb.info["transparency"] = BLUE
    return rgb, RED


# Decodes one large image in a Python of its own and prints how much its resident memory rose at
# the peak (the peak reset first: importing TensorFlow's peak would hide the decoding's).
DECODE_PEAK = """
import sys
from captioner.inputs.pixels import load_pixels

def memory(field):
    return next(int(line.split()[1]) * 1024 for line in open("/proc/self/status")
                if line.startswith(field))

with open("/proc/self/clear_refs", "w") as peak:
    peak.write("5")
before = memory("VmRSS:")
load_pixels(sys.argv[1])
print(memory("VmHWM:") - before)
"""


# The most a decoding may hold, in bytes a pixel: the image as decoded (Pillow: 4 bytes a pixel for
# RGB and RGBA, 2 for 16-bit grey) and once converted; 16-bit grey also its levels as an array, then
# as 8-bit pixels twice. The old order held 20, 16 and 12.
DECODING_BYTES_PER_PIXEL = {"RGBA": 2 * 4, "I;16": 2 + 2 + 1 + 1, "RGB": 4}


@pytest.mark.parametrize("mode", DECODING_BYTES_PER_PIXEL)
def test_a_large_image_is_held_at_full_size_at_most_twice(tmp_path, mode):
    side = 4000
    ramp = np.arange(side, dtype=np.uint16)
    if mode == "I;16":
        image = Image.fromarray(ramp[None, :] * 16 + ramp[:, None])
    else:
        image = Image.fromarray(np.broadcast_to((ramp % 251).astype(np.uint8)[:, None, None],
                                                (side, side, len(mode))).copy(), mode)
    image.save(tmp_path / "large.png")
    rise = int(subprocess.run([sys.executable, "-c", DECODE_PEAK, str(tmp_path / "large.png")],
                              capture_output=True, text=True, check=True).stdout)
    most = 1.15 * DECODING_BYTES_PER_PIXEL[mode] * side * side
    assert rise < most, f"decoding rose {rise / 1e6:.0f} MB, {rise / (side * side):.1f} B a pixel"


@pytest.mark.parametrize(("mode", "save"), [("I;16", "PNG"), ("I", "TIFF"), ("I", "PPM"),
                                            ("I;16B", "TIFF")],
                         ids=["16-bit-png", "32-bit-tiff", "16-bit-pgm", "big-endian-tiff"])
def test_16_and_32_bit_greyscale_is_scaled_to_8_bits(tmp_path, mode, save):
    levels = np.random.default_rng(0).integers(0, 65536, (60, 80)).astype(np.uint16)
    if mode == "I;16B":
        image = Image.frombytes(mode, (80, 60), levels.astype(">u2").tobytes())
    else:
        image = Image.fromarray(levels.astype(np.int32) if save == "TIFF" else levels)
    image.save(tmp_path / "grey", format=save)
    with Image.open(tmp_path / "grey") as reopened:
        assert reopened.mode == mode
    Image.fromarray(np.rint(levels / 257).astype(np.uint8)).save(tmp_path / "eight.png")
    np.testing.assert_array_equal(load_pixels(tmp_path / "grey"), load_pixels(tmp_path / "eight.png"))


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P", "RGB"])
def test_transparent_pixels_are_composited_over_white(tmp_path, mode):
    image, left_colour = _half_transparent(mode)
    image.save(tmp_path / "transparent.png", transparency=image.info.get("transparency"))
    with Image.open(tmp_path / "transparent.png") as reopened:
        assert reopened.mode == mode and reopened.has_transparency_data

    pixels = load_pixels(tmp_path / "transparent.png")

    np.testing.assert_allclose(_mean_colour(pixels[:, :100]), left_colour, atol=1)
    np.testing.assert_array_equal(pixels[:, 124:], np.full((224, 100, 3), BACKGROUND, np.uint8))


def test_huge_jpeg_decodes_reduced_and_huge_png_is_refused(tmp_path):
    # 48 megapixels: over the full-decode limit, so the JPEG only passes if decoded at reduced size.
    Image.new("L", (8000, 6000), 128).save(tmp_path / "huge.jpg")
    Image.new("L", (8000, 6000), 0).save(tmp_path / "huge.png")

    np.testing.assert_allclose(load_pixels(tmp_path / "huge.jpg"), 128, atol=2)
    with pytest.raises(BadImage, match="too large to decode: 8000x6000"):
        load_pixels(tmp_path / "huge.png")


def test_bad_images_raise_with_a_reason(tmp_path):
    for name, words in write_undecodable_images(tmp_path).items():
        with pytest.raises(BadImage, match=words):
            load_pixels(tmp_path / name)


def assert_same_batch_shape_features(actual: np.ndarray, expected: np.ndarray) -> None:
    """Features computed at the same batch shape, by the same kernels, but from other batch rows.

    Nothing promises bit-identical results for an image wherever its row sits in a batch, so a
    value may move by one float16 step (float16 keeps 10 fraction bits: 2**-10 relative) and, near
    zero, by float32 rounding noise (2**-20, about 1e-6). That the batch shape is the same is
    checked exactly, by test_the_model_always_sees_a_full_batch.
    """
    np.testing.assert_allclose(actual, expected, rtol=2**-10, atol=2**-20)


class ImageFiles(NamedTuple):
    paths: list[Path]  # all of them, sorted by name
    good: list[str]  # names of the decodable ones
    bad: dict[str, str]  # name -> expected words in the reason


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> ImageFiles:
    folder = tmp_path_factory.mktemp("images")
    good = ["a_rgb.jpg", *sorted(write_unusual_images(folder))]
    bad = write_undecodable_images(folder)
    return ImageFiles(sorted(folder.iterdir()), good, bad)


def test_extract_keeps_order_and_lists_bad_images(images, extractor):
    good, bad = images.good, images.bad

    result = extractor.extract(images.paths)

    assert result.features.dtype == np.float16
    assert result.features.shape == (len(good), 1280)
    assert [p.name for p in result.paths] == good
    assert [path.name for path, _ in result.bad] == sorted(bad)
    for (_, reason), words in zip(result.bad, [bad[name] for name in sorted(bad)], strict=True):
        assert words in reason


def test_an_image_alone_gets_the_features_of_a_larger_run(images, extractor):
    result = extractor.extract(images.paths)

    alone = np.concatenate([extractor.extract([path]).features for path in result.paths])

    assert_same_batch_shape_features(alone, result.features)


def test_features_from_other_batch_sizes_agree_within_float16_rounding(images, extractor):
    wide = FeatureExtractor("efficientnet_lite0", "imagenet", batch_size=5)

    features = extractor.extract(images.paths).features
    wide_features = wide.extract(images.paths).features

    # Another batch shape may run other oneDNN kernels, whose float32 sums differ in the last bits
    # (a few 1e-6). Rounded to float16 that is one step: rtol 2**-10, as float16 keeps 10 fraction
    # bits. Below 2**-4 float16's steps are finer than that noise, so atol 2**-15 (3.05e-5) allows
    # for it: an AVX512-VNNI CPU gave differences up to 3e-5 there.
    np.testing.assert_allclose(wide_features, features, rtol=2**-10, atol=2**-15)


def test_the_model_always_sees_a_full_batch(images):
    extractor = FeatureExtractor("efficientnet_lite0", "none", batch_size=4)
    model, shapes = extractor.model, []

    def recording_model(pixels: tf.Tensor, training: bool) -> tf.Tensor:
        shapes.append(tuple(pixels.shape))
        return model(pixels, training=training)

    extractor.model = recording_model
    result = extractor.extract(images.paths[:5])

    assert result.features.shape == (5, 1280)
    assert shapes and set(shapes) == {(4, 224, 224, 3)}
    with pytest.raises(ValueError, match="5 images in a forward pass of 4, batch_size 4"):
        extractor.forward(np.zeros((5, 224, 224, 3), np.uint8))


def test_the_services_smaller_cnn_shapes_give_the_full_shapes_features(images):
    extractor = FeatureExtractor("efficientnet_lite0", "imagenet", batch_size=8)
    pixels = np.stack([load_pixels(path) for path in images.paths if path.name in images.good])[:8]
    full = extractor.forward(pixels)
    assert [cnn_shape(count, 8) for count in range(1, 9)] == [2, 2, 4, 4, 8, 8, 8, 8]
    for count in range(1, len(pixels) + 1):
        assert_same_batch_shape_features(
            extractor.forward(pixels[:count], cnn_shape(count, 8)), full[:count])


def test_decode_threads_do_not_change_the_pixels(images):
    one, two = (list(image_batches(images.paths, 4, threads).as_numpy_iterator()) for threads in (1, 2))

    assert len(one) == len(two) == 3
    for (pixels_one, reasons_one), (pixels_two, reasons_two) in zip(one, two, strict=True):
        np.testing.assert_array_equal(pixels_one, pixels_two)
        np.testing.assert_array_equal(reasons_one, reasons_two)


def _prepare_stage(folder: Path, max_bad_fraction: float, grid: bool = False,
                   mirrored: bool = False) -> None:
    images = folder / "data/raw/images"
    (images / "more").mkdir(parents=True)
    write_unusual_images(images)
    write_undecodable_images(images)
    (images / "a_rgb.jpg").rename(images / "more/a_rgb.jpg")
    (images / "notes.txt").write_text("not an image, so not counted as a bad one")
    section = {"backbone": "efficientnet_lite0", "weights": "imagenet", "weights_sha256": "",
               "batch_size": 4, "decode_threads": 2, "max_bad_fraction": max_bad_fraction,
               "grid": grid, "mirrored": mirrored}
    (folder / "params.yaml").write_text(yaml.safe_dump({"extract_features": section}))
    place_builtin_pretrained(folder)


def test_stage_writes_features_ids_backbone_and_metrics(tmp_path, monkeypatch, capsys):
    _prepare_stage(tmp_path, max_bad_fraction=0.5)
    monkeypatch.chdir(tmp_path)

    started = time.perf_counter()
    extract_features.main()
    seconds = time.perf_counter() - started

    features = read_npy("data/features/features.npy")
    ids = read_json("data/features/images.json")
    metrics = read_json("data/records/extract_features.json")
    assert features.shape == (7, 1280) and features.dtype == np.float16
    assert ids == sorted(ids) and len(ids) == 7 and "more/a_rgb.jpg" in ids
    assert read_json("data/features/backbone.json") == {
        "backbone": "efficientnet_lite0", "weights": "imagenet", "dim": 1280, "batch_size": 4}
    assert metrics["count"] == 7 and metrics["dim"] == 1280
    assert [bad["file"] for bad in metrics["bad_images"]] == sorted(write_undecodable_images(tmp_path))
    # The stage times the extraction alone, inside the call timed here; all 10 images count.
    images_per_s = read_json("metrics/speed/extract_features.json")["images_per_s"]
    assert images_per_s >= round(10 / seconds, 1)
    assert capsys.readouterr().out.endswith(f", 3 bad, {images_per_s:.1f} images/s\n")
    rebuilt = FeatureExtractor.from_mapping(read_json("data/features/backbone.json"), "backbone.json")
    assert rebuilt.batch_size == 4
    alone = [rebuilt.extract([Path("data/raw/images") / image_id]).features for image_id in ids]
    assert_same_batch_shape_features(np.concatenate(alone), features)
    assert not Path("data/features/grid.npy").exists()


def test_with_grid_and_mirrored_the_stage_writes_regions_and_the_mirrored_photos_features(
        tmp_path, monkeypatch, capsys):
    _prepare_stage(tmp_path, max_bad_fraction=0.5, grid=True, mirrored=True)
    _red_left_blue_right().save(tmp_path / "data/raw/images/halves.png")
    monkeypatch.chdir(tmp_path)

    extract_features.main()

    features = read_npy("data/features/features.npy")
    grid = np.load("data/features/grid.npy", mmap_mode="r")
    assert grid.dtype == np.float16 and grid.shape == (8, 49, 1280)
    record = read_json("data/records/extract_features.json")
    assert (record["grid"], record["mirrored"]) == ([49, 1280], True)
    assert "and x 49 regions -> grid.npy" in capsys.readouterr().out
    assert not [path for path in Path("data").rglob("*") if "tmp" in path.name]
    # The pooled vectors are the plain extractor's; the regions' mean is theirs, up to float16.
    plain = FeatureExtractor("efficientnet_lite0", "imagenet", batch_size=4)
    ids = read_json("data/features/images.json")
    expected = plain.extract([Path("data/raw/images") / image_id for image_id in ids]).features
    np.testing.assert_array_equal(features, expected)
    np.testing.assert_allclose(grid.astype(np.float32).mean(axis=1), features, rtol=2**-9,
                               atol=2**-10)
    regions = FeatureExtractor("efficientnet_lite0", "imagenet", batch_size=4, grid=True)
    assert regions.feature_shape == (49, 1280)
    alone = regions.extract([Path("data/raw/images") / ids[-1]]).features
    assert_same_batch_shape_features(alone, grid[-1:])
    # The mirrored photos' pooled vectors and regions, of the same images in the same rows.
    mirrored_grid = np.load("data/features/mirrored_grid.npy", mmap_mode="r")
    assert mirrored_grid.shape == grid.shape
    pixels = np.stack([load_pixels(Path("data/raw/images") / image_id) for image_id in ids[:4]])
    pooled, mirrored_regions = regions.forward_all(pixels[:, :, ::-1])
    assert_same_batch_shape_features(read_npy("data/features/mirrored_features.npy")[:4], pooled)
    assert_same_batch_shape_features(mirrored_grid[:4], mirrored_regions)
    # Red left, blue right: the mirror's left column of regions is like the photo's right one.
    halves = ids.index("halves.png")
    photo, mirror = (array[halves].astype(np.float32).reshape(7, 7, -1) for array in (grid, mirrored_grid))
    assert np.abs(mirror[:, 0] - photo[:, 6]).mean() * 2 < np.abs(mirror[:, 0] - photo[:, 0]).mean()


def test_grid_features_need_a_backbone_whose_map_they_can_be(tmp_path):
    with pytest.raises(PipelineError, match="resnet50: grid features need an EfficientNet-Lite"):
        FeatureExtractor("resnet50", "none", batch_size=2, grid=True)


@pytest.mark.parametrize(("description", "problem"), [
    ('{"backbone": "efficientnet_lite0", "weights": "imagenet", "dim": 1280}',
     "backbone description needs 'batch_size' (int), got None"),
    ('{"backbone": "efficientnet_lite0", "weights": "imagenet", "dim": 1280, "batch_size": 0}',
     "batch_size must be >= 1, got 0"),
    ('{"backbone": "vgg16", "weights": "imagenet", "dim": 1280, "batch_size": 4}',
     "unknown backbone 'vgg16'"),
    ("[1]", "backbone description must be a JSON object"),
])
def test_unusable_backbone_description_is_refused_naming_the_file(tmp_path, description, problem):
    path = tmp_path / "backbone.json"
    path.write_text(description)

    with pytest.raises(PipelineError, match=re.escape(f"{path}: {problem}")):
        FeatureExtractor.from_mapping(json.loads(path.read_text()), str(path))


def test_stage_fails_when_too_many_images_are_bad(tmp_path, monkeypatch):
    _prepare_stage(tmp_path, max_bad_fraction=0.1)
    monkeypatch.chdir(tmp_path)

    with pytest.raises(PipelineError, match="3 of 10 images cannot be decoded"):
        extract_features.main()
    assert not Path("data/features").exists()


def test_stage_refuses_an_image_folder_without_images(tmp_path, monkeypatch):
    _prepare_stage(tmp_path, max_bad_fraction=0.1)
    shutil.rmtree(tmp_path / "data/raw/images")
    (tmp_path / "data/raw/images").mkdir()
    (tmp_path / "data/raw/images/.DS_Store").write_bytes(b"")
    monkeypatch.chdir(tmp_path)

    with pytest.raises(PipelineError, match="data/raw/images: no images"):
        extract_features.main()


@pytest.mark.parametrize(("bad", "refused"), [(1, False), (2, False), (3, True)])
def test_the_bad_image_limit_allows_exactly_max_bad_fraction(tmp_path, bad, refused):
    # 2 of 10 images at max_bad_fraction 0.2 is at the limit, and allowed; 3 is over it.
    extraction = Extraction(np.zeros((10 - bad, 4), np.float16), [],
                            [(tmp_path / f"bad_{index}.jpg", "truncated") for index in range(bad)])
    if not refused:
        check_bad_fraction(extraction, tmp_path, 10, 0.2)
        return
    with pytest.raises(PipelineError) as caught:
        check_bad_fraction(extraction, tmp_path, 10, 0.2)
    assert str(caught.value) == (f"{tmp_path}: 3 of 10 images cannot be decoded, more than "
                                 "extract_features.max_bad_fraction=0.2 (first: bad_0.jpg: truncated)")
