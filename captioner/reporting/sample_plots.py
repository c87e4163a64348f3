"""The epoch table as DVC image plots: one PNG per sample image, drawn with Pillow, showing the photo
and below it one line per epoch ("epoch 3: a dog runs ..."), long captions wrapped, the chosen
epoch highlighted. `dvc plots show` puts them under the charts, and `dvc plots diff` shows each
image's PNG of two revisions side by side.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw, ImageFont, ImageOps

from captioner.core.paths import figure_name
from captioner.reporting.epoch_table import EpochRow, EpochTable, unsaved_note

WIDTH = 480
MARGIN = 12
PHOTO_HEIGHT = 320
FONT_SIZE = 15
LINE_HEIGHT = 20
INK, GREY, CHOSEN_INK = (20, 20, 20), (110, 110, 110), (0, 0, 0)
CHOSEN_BACKGROUND = (255, 236, 150)


def open_photo(path: Path, box: tuple[int, int]) -> Image.Image:
    """The image at `path`, upright (EXIF orientation applied), in RGB, shrunk to fit `box`."""
    with Image.open(path) as image:
        photo = ImageOps.exif_transpose(image).convert("RGB")
    photo.thumbnail(box)
    return photo


def plot_name(position: int, image: str) -> str:
    """The PNG's file name: the image's place among the samples (from 1), then its id made safe."""
    return figure_name(position, image, digits=2)


def wrap(text: str, font: ImageFont.FreeTypeFont, width: float) -> list[str]:
    """`text` broken between words into lines at most `width` pixels wide (a longer word stays whole)."""
    lines: list[str] = []
    for word in text.split():
        if lines and font.getlength(f"{lines[-1]} {word}") <= width:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    return lines or [""]


def epoch_label(row: EpochRow) -> str:
    return f"{row.title()}: " if row.ensemble else f"epoch {row.title()}: "


def draw_sample(photo: Image.Image, table: EpochTable, position: int) -> Image.Image:
    """The plot of the table's sample image at `position`: its id and the decoding settings, the
    photo, then its caption at each epoch and the table's note on unsaved epochs."""
    font = ImageFont.load_default(size=FONT_SIZE)
    text_width = WIDTH - 2 * MARGIN
    blocks = []
    for row in table.rows:
        label = epoch_label(row)
        indent = font.getlength(label)
        blocks.append((row.chosen, label, indent, wrap(row.captions[position], font, text_width - indent)))
    header = [table.images[position], *wrap(table.decoding, font, text_width)]
    notes = wrap(unsaved_note(table), font, text_width) if table.unsaved_epochs else []
    text_lines = len(header) + sum(len(lines) for *_, lines in blocks) + len(notes)
    canvas = Image.new("RGB", (WIDTH, photo.height + text_lines * LINE_HEIGHT + 3 * MARGIN), "white")
    pen = ImageDraw.Draw(canvas)
    for number, line in enumerate(header):
        pen.text((MARGIN, MARGIN + number * LINE_HEIGHT), line, font=font, fill=GREY)
    canvas.paste(photo, ((WIDTH - photo.width) // 2, MARGIN + len(header) * LINE_HEIGHT))
    y = photo.height + len(header) * LINE_HEIGHT + 2 * MARGIN
    for chosen, label, indent, lines in blocks:
        if chosen:
            pen.rectangle((MARGIN // 2, y - 2, WIDTH - MARGIN // 2, y + len(lines) * LINE_HEIGHT),
                          fill=CHOSEN_BACKGROUND)
        pen.text((MARGIN, y), label, font=font, fill=CHOSEN_INK if chosen else GREY)
        for line in lines:
            pen.text((MARGIN + indent, y), line, font=font, fill=CHOSEN_INK if chosen else INK)
            y += LINE_HEIGHT
    for line in notes:
        pen.text((MARGIN, y), line, font=font, fill=GREY)
        y += LINE_HEIGHT
    return canvas


def write_sample_plots(table: EpochTable, images_folder: Path, folder: Path) -> None:
    """Writes one PNG per sample image of `table` into `folder` (created), named by `plot_name`."""
    folder.mkdir(parents=True)
    for position, image in enumerate(table.images):
        photo = open_photo(images_folder / image, (WIDTH - 2 * MARGIN, PHOTO_HEIGHT))
        draw_sample(photo, table, position).save(folder / plot_name(position, image))
