"""Where each word looked: an attention captioner's caption of an image, word by word, with the
weights each word's step gave the image's regions, and the figure of Show, Attend and Tell that
shows them: one panel per word, the photo lit where the word attended and dimmed elsewhere.

The weights are those of the decoding step that chose the word, recomputed by teacher-forcing the
chosen caption through the trained layers (network.attention_scores_model), so beam search
itself carries no weights. In an ensemble they are its first attention member's, on the
ensemble's caption. The regions are the CNN's grid over the 224x224 pixels it was given
(inputs.pixels), so the figure draws on those very pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import keras
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from captioner.core.params import DECODE_BATCH_SIZE, DecodingSettings
from captioner.core.text import PAD_ID, START_ID
from captioner.model.decoding import Decoder
from captioner.model.network import attention_scores_model

PANEL = 160
COLUMNS = 5
LABEL_HEIGHT = 24
FONT_SIZE = 15
# A region with no weight keeps this share of its brightness; the most attended keeps all of it.
DIMMED = 0.2
BACKGROUND, INK = (255, 255, 255), (20, 20, 20)


@dataclass(frozen=True)
class AttendedCaption:
    """A caption's words, and for each word the weights over the regions (rows, columns) that its
    step attended with (each word's weights sum to 1)."""

    words: list[str]
    weights: np.ndarray


def attended_captions(model: keras.Model, regions: np.ndarray, settings: DecodingSettings,
                      vocabulary: list[str],
                      batch_size: int = DECODE_BATCH_SIZE) -> list[AttendedCaption] | None:
    """The best caption of each image (as decoded with `settings`) with its words' attention;
    None when no member of `model` attends. `regions` are the images' (images, R, D) regions."""
    scores_model = attention_scores_model(model)
    if scores_model is None:
        return None
    ids = Decoder.from_model(model).caption_ids(regions, settings, batch_size)
    side = math.isqrt(regions.shape[1])
    if side * side != regions.shape[1]:
        raise ValueError(f"{regions.shape[1]} regions are not a square grid")
    longest = max((len(caption) for caption in ids), default=0)
    prefixes = np.full((len(ids), longest + 1), PAD_ID, np.int32)
    prefixes[:, 0] = START_ID
    for row, caption in enumerate(ids):
        prefixes[row, 1:len(caption) + 1] = caption
    weights = np.concatenate([
        np.asarray(scores_model([regions[start:start + batch_size], prefixes[start:start + batch_size]]))
        for start in range(0, len(ids), batch_size)]) if ids else np.zeros((0, 1, regions.shape[1]))
    # The step at position t read word t - 1 (the start token first) and chose word t.
    return [AttendedCaption([vocabulary[word] for word in caption],
                            weights[row, :len(caption)].reshape(len(caption), side, side))
            for row, caption in enumerate(ids)]


def _lit(photo: Image.Image, weights: np.ndarray) -> Image.Image:
    """`photo` lit by `weights` (rows, columns), smoothly upsampled over it, scaled to their most."""
    heat = Image.fromarray((weights / max(weights.max(), 1e-12) * 255).astype(np.uint8))
    light = np.asarray(heat.resize(photo.size, Image.Resampling.BICUBIC), np.float32) / 255
    shade = DIMMED + (1 - DIMMED) * light[..., None]
    return Image.fromarray((np.asarray(photo, np.float32) * shade).astype(np.uint8))


def attention_figure(pixels: np.ndarray, attended: AttendedCaption) -> Image.Image:
    """The figure for one image: the photo (`pixels`, the CNN's uint8 input) and then one panel per
    word, the word above the photo lit where it looked, COLUMNS panels a row."""
    photo = Image.fromarray(pixels).convert("RGB").resize((PANEL, PANEL))
    panels = [("(photo)", photo)] + [(word, _lit(photo, weights))
                                     for word, weights in zip(attended.words, attended.weights,
                                                              strict=True)]
    rows = math.ceil(len(panels) / COLUMNS)
    figure = Image.new("RGB", (COLUMNS * PANEL, rows * (PANEL + LABEL_HEIGHT)), BACKGROUND)
    draw, font = ImageDraw.Draw(figure), ImageFont.load_default(size=FONT_SIZE)
    for index, (word, panel) in enumerate(panels):
        left, top = index % COLUMNS * PANEL, index // COLUMNS * (PANEL + LABEL_HEIGHT)
        draw.text((left + PANEL / 2, top + LABEL_HEIGHT / 2), word, fill=INK, font=font,
                  anchor="mm")
        figure.paste(panel, (left, top + LABEL_HEIGHT))
    return figure
