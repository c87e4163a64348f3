"""Image files for the decoding tests: noise JPEGs, decodable images in unusual formats, undecodable files."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import tensorflow as tf
from PIL import Image

RED, BLUE, GREEN, YELLOW = (255, 0, 0), (0, 0, 255), (0, 160, 0), (255, 255, 0)


def noise_jpeg(rng: np.random.Generator, size: int = 64) -> bytes:
    """A `size`-pixel square JPEG of random pixels: it decodes, and shows nothing."""
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buffer, "JPEG")
    return buffer.getvalue()


def write_unusual_images(folder: Path) -> dict[str, tuple[int, int, int]]:
    """Writes decodable images in unusual formats (grey, CMYK, 16-bit, a PNG or GIF named .jpg) and
    a noise JPEG, `a_rgb.jpg`; returns each file name but the noise one's -> its expected colour."""
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


def write_undecodable_images(folder: Path) -> dict[str, str]:
    """Writes undecodable files named .jpg (not an image, empty, truncated); returns each file name
    -> words the reason it is refused must hold."""
    (folder / "x_corrupt.jpg").write_bytes(b"this is not an image" * 20)
    (folder / "y_empty.jpg").write_bytes(b"")
    jpeg = noise_jpeg(np.random.default_rng(0))
    (folder / "z_truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    return {"x_corrupt.jpg": "not an image Pillow can read", "y_empty.jpg": "not an image Pillow can read",
            "z_truncated.jpg": "truncated"}
