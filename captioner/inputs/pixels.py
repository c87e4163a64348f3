"""Image files or bytes in, the CNN's input out: upright RGB pixels of IMAGE_SIZE x IMAGE_SIZE.

Any format Pillow reads is accepted whatever the file name says; a file that cannot be decoded
raises BadImage with the reason, and one too large to decode ImageTooLarge.
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from captioner.inputs.backbones import IMAGE_SIZE

# Largest image decoded in full (about 100 MB as RGB). JPEGs are decoded already reduced (libjpeg's
# DCT scaling by up to 8 per side, never below 224), so in practice only huge PNGs etc. are refused.
MAX_DECODED_PIXELS = 36_000_000
# Pillow opens 16-bit greyscale as I;16* (or I); its own conversion to RGB clips instead of scaling.
SIXTEEN_BIT_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N")
SIXTEEN_BIT_TABLE = ((np.arange(65536) + 128) // 257).astype(np.uint8)
PIXELS_SHAPE = (IMAGE_SIZE, IMAGE_SIZE, 3)
# What transparent pixels are composited over: white, as on the page they are meant for.
BACKGROUND = (255, 255, 255)


class BadImage(Exception):
    """An image file that cannot be turned into pixels; the message says why."""


class ImageTooLarge(BadImage):
    """An image with more than MAX_DECODED_PIXELS pixels to decode."""


def _eight_bit(image: Image.Image) -> Image.Image:
    """A 16-bit greyscale image as 8-bit L, each level rounded from value / 257 (through a table,
    so no float copy of the whole image is made)."""
    levels = np.asarray(image)
    if levels.dtype != np.uint16:  # 32-bit "I", or big-endian 16-bit
        levels = np.clip(levels, 0, SIXTEEN_BIT_TABLE.size - 1)
    return Image.fromarray(SIXTEEN_BIT_TABLE[levels], mode="L")


def _resized_rgb(image: Image.Image) -> Image.Image:
    """The image resized to the CNN's square as RGB, transparent pixels (alpha, or a palette's or
    PNG's transparent colour) composited over BACKGROUND.

    Resizing comes before the colour conversions where the result is the same (Pillow resizes
    RGBA premultiplied, so compositing over a plain colour commutes with it), so a large image is
    held at full size at most twice, decoded and converted.
    """
    size = (IMAGE_SIZE, IMAGE_SIZE)
    if image.mode in SIXTEEN_BIT_MODES:
        image = _eight_bit(image)
    if image.has_transparency_data:
        rgba = image if image.mode == "RGBA" else image.convert("RGBA")
        small = rgba.resize(size, Image.Resampling.BILINEAR)
        return Image.alpha_composite(Image.new("RGBA", size, (*BACKGROUND, 255)), small).convert("RGB")
    if image.mode not in ("RGB", "L"):
        image = image.convert("RGB")
    return image.resize(size, Image.Resampling.BILINEAR).convert("RGB")


def load_pixels(source: Path | str | BinaryIO) -> np.ndarray:
    """Decodes an image file to RGB uint8 pixels of IMAGE_SIZE x IMAGE_SIZE, upright per its EXIF.

    The whole photo is resized to the square, its aspect ratio not kept (squashed, not centre-
    cropped): captions speak of what lies at the edges too, and a 4:3 photo squashed to a square is
    within the aspect-ratio jitter (3:4 to 4:3) of the random crops EfficientNet-Lite0 was trained on.
    Transparent pixels are composited over white (BACKGROUND), the page a transparent picture is
    meant to be seen on, never left to the colour stored under them. JPEGs decode already reduced
    (libjpeg's DCT scaling, never below the square), so a 12-megapixel phone photo decodes at
    500x375. Any format Pillow reads is accepted whatever the file name says. Raises BadImage with
    the reason.
    """
    try:
        with Image.open(source) as image:
            image.draft("RGB", (IMAGE_SIZE, IMAGE_SIZE))
            if image.width * image.height > MAX_DECODED_PIXELS:
                raise ImageTooLarge(f"too large to decode: {image.width}x{image.height} pixels")
            ImageOps.exif_transpose(image, in_place=True)
            return np.asarray(_resized_rgb(image), dtype=np.uint8)
    except BadImage:
        raise
    except Image.DecompressionBombError as error:
        raise ImageTooLarge(f"too large to decode: {error}") from None
    except UnidentifiedImageError:
        raise BadImage("not an image Pillow can read") from None
    # Decoders of broken files raise many exception types (OSError, SyntaxError, ValueError,
    # DecompressionBombError, struct.error, ...); each one means this file is unusable.
    except Exception as error:
        raise BadImage(f"{type(error).__name__}: {error}") from None
