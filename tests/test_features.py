"""Tests for image decoding, the feature extractor and the extract_features stage."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import yaml
from PIL import Image

from captioner.errors import PipelineError
from captioner.features import BadImage, FeatureExtractor, load_pixels
from captioner.files import read_json, read_npy
from stages import extract_features

RED, BLUE = (255, 0, 0), (0, 0, 255)
ORIENTATION_TAG = 0x0112


def _noise_jpeg_bytes() -> bytes:
    pixels = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG")
    return buffer.getvalue()


def _red_left_blue_right(width: int = 64, height: int = 32) -> Image.Image:
    pixels = np.zeros((height, width, 3), np.uint8)
    pixels[:, : width // 2] = RED
    pixels[:, width // 2:] = BLUE
    return Image.fromarray(pixels)


def write_good_images(folder: Path) -> dict[str, tuple[int, int, int]]:
    """Writes decodable images in unusual formats; returns file name -> expected colour."""
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (120, 90, 3), dtype=np.uint8)).save(folder / "a_rgb.jpg")
    Image.new("L", (50, 40), 90).save(folder / "b_gray.jpg")
    Image.new("RGB", (40, 40), RED).save(folder / "c_png_named.jpg", format="PNG")
    Image.new("RGB", (40, 40), BLUE).save(folder / "d_gif_named.jpg", format="GIF")
    Image.new("CMYK", (40, 40), (0, 255, 255, 0)).save(folder / "e_cmyk.jpg", quality=95)
    Image.fromarray(np.full((30, 30), 40000, np.uint16)).save(folder / "f_gray16.png")
    rgb16 = tf.io.encode_png(np.full((30, 30, 3), [40000, 0, 65535], np.uint16)).numpy()
    (folder / "g_rgb16.png").write_bytes(rgb16)
    return {"b_gray.jpg": (90, 90, 90), "c_png_named.jpg": RED, "d_gif_named.jpg": BLUE,
            "e_cmyk.jpg": RED, "f_gray16.png": (156, 156, 156), "g_rgb16.png": (156, 0, 255)}


def write_bad_images(folder: Path) -> dict[str, str]:
    """Writes undecodable files; returns file name -> expected words in the reason."""
    (folder / "x_corrupt.jpg").write_bytes(b"this is not an image" * 20)
    (folder / "y_empty.jpg").write_bytes(b"")
    jpeg = _noise_jpeg_bytes()
    (folder / "z_truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    return {"x_corrupt.jpg": "cannot identify image file", "y_empty.jpg": "cannot identify",
            "z_truncated.jpg": "truncated"}


@pytest.fixture(scope="module")
def extractor():
    return FeatureExtractor("efficientnet_lite0", "imagenet", batch_size=2, decode_threads=2)


def test_unusual_formats_decode_to_the_right_colours(tmp_path):
    for name, colour in write_good_images(tmp_path).items():
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


def test_huge_jpeg_decodes_reduced_and_huge_png_is_refused(tmp_path):
    # 48 megapixels: over the full-decode limit, so the JPEG only passes if decoded at reduced size.
    Image.new("L", (8000, 6000), 128).save(tmp_path / "huge.jpg")
    Image.new("L", (8000, 6000), 0).save(tmp_path / "huge.png")

    np.testing.assert_allclose(load_pixels(tmp_path / "huge.jpg"), 128, atol=2)
    with pytest.raises(BadImage, match="too large to decode: 8000x6000"):
        load_pixels(tmp_path / "huge.png")


def test_bad_images_raise_with_a_reason(tmp_path):
    for name, words in write_bad_images(tmp_path).items():
        with pytest.raises(BadImage, match=words):
            load_pixels(tmp_path / name)


def test_extract_keeps_order_lists_bad_images_and_ignores_batch_size(tmp_path, extractor):
    good = ["a_rgb.jpg", *sorted(write_good_images(tmp_path))]
    bad = write_bad_images(tmp_path)
    paths = sorted(tmp_path.iterdir())

    result = extractor.extract(paths)

    assert result.features.dtype == np.float16
    assert result.features.shape == (len(good), 1280)
    assert [p.name for p in result.paths] == good
    assert [path.name for path, _ in result.bad] == sorted(bad)
    for (_, reason), words in zip(result.bad, [bad[name] for name in sorted(bad)], strict=True):
        assert words in reason
    one_by_one = np.concatenate([extractor.extract([path]).features for path in result.paths])
    np.testing.assert_array_equal(result.features, one_by_one)
    wide = FeatureExtractor("efficientnet_lite0", "imagenet", batch_size=5)
    np.testing.assert_array_equal(result.features, wide.extract(paths).features)


def _prepare_stage(folder: Path, max_bad_fraction: float) -> None:
    images = folder / "data/raw/images"
    images.mkdir(parents=True)
    write_good_images(images)
    write_bad_images(images)
    section = {"backbone": "efficientnet_lite0", "weights": "imagenet", "batch_size": 4,
               "decode_threads": 2, "max_bad_fraction": max_bad_fraction}
    (folder / "params.yaml").write_text(yaml.safe_dump({"extract_features": section}))


def test_stage_writes_features_ids_backbone_and_metrics(tmp_path, monkeypatch, extractor):
    _prepare_stage(tmp_path, max_bad_fraction=0.5)
    monkeypatch.chdir(tmp_path)

    extract_features.main()

    features = read_npy("data/features/features.npy")
    ids = read_json("data/features/images.json")
    metrics = read_json("metrics/features.json")
    assert features.shape == (7, 1280) and features.dtype == np.float16
    assert ids == sorted(ids) and len(ids) == 7 and "x_corrupt.jpg" not in ids
    assert read_json("data/features/backbone.json") == extractor.description()
    assert metrics["count"] == 7 and metrics["dim"] == 1280
    assert [bad["file"] for bad in metrics["bad_images"]] == sorted(write_bad_images(tmp_path))
    assert read_json("metrics/speed/extract_features.json")["images_per_s"] > 0
    rebuilt = FeatureExtractor.from_description("data/features/backbone.json")
    again = rebuilt.extract([Path("data/raw/images") / image_id for image_id in ids])
    np.testing.assert_array_equal(features, again.features)


def test_stage_fails_when_too_many_images_are_bad(tmp_path, monkeypatch):
    _prepare_stage(tmp_path, max_bad_fraction=0.1)
    monkeypatch.chdir(tmp_path)

    with pytest.raises(PipelineError, match="3 of 10 images cannot be decoded"):
        extract_features.main()
    assert not Path("data/features").exists()


def test_stage_refuses_an_image_folder_without_images(tmp_path, monkeypatch):
    _prepare_stage(tmp_path, max_bad_fraction=0.1)
    for image in (tmp_path / "data/raw/images").iterdir():
        image.unlink()
    (tmp_path / "data/raw/images/.DS_Store").write_bytes(b"")
    monkeypatch.chdir(tmp_path)

    with pytest.raises(PipelineError, match="data/raw/images: no images"):
        extract_features.main()
