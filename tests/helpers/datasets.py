"""Small captioned image collections written by the tests: coloured shapes drawn with Pillow, each
with five captions that say what is drawn, so a tiny model can learn something from them."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from captioner.captions.formats.flickr8k import SPLIT_FILES, TOKEN_FILE
from tests.helpers.archives import write_files

COLOURS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220),
           "yellow": (235, 210, 40)}
SHAPES = ("circle", "square", "triangle")
BACKGROUNDS = {"white": (245, 245, 245), "black": (15, 15, 15)}
CORRUPT_BYTES = b"this is not a picture\n" * 10


@dataclass(frozen=True)
class Picture:
    """One drawn image: its file name, pixels and five captions."""

    name: str
    image: Image.Image
    captions: list[str]


def draw(shape: str, colour: str, background: str, rng: np.random.Generator,
         size: tuple[int, int] = (96, 80)) -> Image.Image:
    """A `colour` `shape` at a random place and size on a plain `background`."""
    image = Image.new("RGB", size, BACKGROUNDS[background])
    width, height = size
    radius = int(rng.integers(14, 24))
    x, y = int(rng.integers(radius, width - radius)), int(rng.integers(radius, height - radius))
    box = (x - radius, y - radius, x + radius, y + radius)
    pen = ImageDraw.Draw(image)
    if shape == "circle":
        pen.ellipse(box, fill=COLOURS[colour])
    elif shape == "square":
        pen.rectangle(box, fill=COLOURS[colour])
    else:
        pen.polygon([(x, y - radius), (x - radius, y + radius), (x + radius, y + radius)],
                    fill=COLOURS[colour])
    return image


def describe(shape: str, colour: str, background: str) -> list[str]:
    return [f"A {colour} {shape} on a {background} background.",
            f"a {colour} {shape}",
            f"There is a {colour} {shape} in the picture",
            f"a {shape} that is {colour} on {background}",
            f"{colour} {shape} on a {background} background"]


def pictures(count: int, seed: int = 0) -> list[Picture]:
    """`count` pictures cycling through shapes, colours and backgrounds, named pic_000.jpg, ..."""
    rng = np.random.default_rng(seed)
    result = []
    for index in range(count):
        shape = SHAPES[index % len(SHAPES)]
        colour = list(COLOURS)[(index // len(SHAPES)) % len(COLOURS)]
        background = list(BACKGROUNDS)[(index // (len(SHAPES) * len(COLOURS))) % len(BACKGROUNDS)]
        result.append(Picture(f"pic_{index:03d}.jpg", draw(shape, colour, background, rng),
                              describe(shape, colour, background)))
    return result


def jpeg_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def write_pictures(folder: Path, names: list[str], seed: int = 0) -> dict[str, list[str]]:
    """Writes `pictures(len(names), seed)` as JPEGs under `names` (paths relative to `folder`);
    returns each name's captions."""
    drawn = dict(zip(names, pictures(len(names), seed), strict=True))
    write_files(folder, {name: jpeg_bytes(picture.image) for name, picture in drawn.items()})
    return {name: picture.captions for name, picture in drawn.items()}


@dataclass(frozen=True)
class Flickr8kArchives:
    """The two archives of a Flickr8k-layout collection and its split lists."""

    images_zip: Path
    text_zip: Path
    splits: dict[str, list[str]]


def write_flickr8k(folder: Path, train: int = 40, dev: int = 10, test: int = 10,
                   corrupt: tuple[str, ...] = ()) -> Flickr8kArchives:
    """Flickr8k_Dataset.zip and Flickr8k_text.zip in the upstream layout; the files named in
    `corrupt` hold bytes that no image decoder reads."""
    drawn = pictures(train + dev + test)
    names = [picture.name for picture in drawn]
    splits = {"train": names[:train], "dev": names[train:train + dev],
              "test": names[train + dev:]}
    folder.mkdir(parents=True, exist_ok=True)
    images_zip, text_zip = folder / "Flickr8k_Dataset.zip", folder / "Flickr8k_text.zip"
    with zipfile.ZipFile(images_zip, "w") as archive:
        for picture in drawn:
            data = CORRUPT_BYTES if picture.name in corrupt else jpeg_bytes(picture.image)
            archive.writestr(f"Flicker8k_Dataset/{picture.name}", data)
    with zipfile.ZipFile(text_zip, "w") as archive:
        captions = {picture.name: picture.captions for picture in drawn}
        for name, content in flickr8k_text_files(captions, splits).items():
            archive.writestr(name, content)
        archive.writestr("readme.txt", "A collection drawn by the tests.\n")
    return Flickr8kArchives(images_zip, text_zip, splits)


def flickr8k_text_files(captions: dict[str, list[str]], splits: dict[str, list[str]]) -> dict[str, bytes]:
    """Flickr8k's token file (`NAME#N<TAB>caption` lines) and its train, dev and test lists."""
    tokens = "".join(f"{name}#{number}\t{caption}\n"
                     for name, texts in captions.items() for number, caption in enumerate(texts))
    return {TOKEN_FILE: tokens.encode(),
            **{SPLIT_FILES[split]: "".join(f"{name}\n" for name in names).encode()
               for split, names in splits.items()}}


# --- captions files in the other formats tokenize reads (captioner/formats) ---------------------
# `captions` maps an image name (a file name or a path relative to the images folder) to its
# captions; `splits` maps an image name to train, val or test.


def write_flickr30k(text_dir: Path, captions: dict[str, list[str]]) -> Path:
    """`results_20130124.token`: `NAME#N<TAB>caption` lines, no splits."""
    path = text_dir / "results_20130124.token"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{name}#{number}\t{caption}\n" for name, texts in captions.items()
                            for number, caption in enumerate(texts)), encoding="utf-8")
    return path


def write_karpathy(text_dir: Path, captions: dict[str, list[str]], splits: dict[str, str]) -> Path:
    """`dataset_coco.json`: a folder in a name becomes `filepath`."""
    images = []
    for name, texts in captions.items():
        folder, _, filename = name.rpartition("/")
        images.append({"filepath": folder, "filename": filename, "split": splits[name],
                       "sentences": [{"raw": text, "tokens": text.split()} for text in texts]})
    path = text_dir / "dataset_coco.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"images": images, "dataset": "coco"}), encoding="utf-8")
    return path


def write_coco(text_dir: Path, captions: dict[str, list[str]], splits: dict[str, str]) -> list[Path]:
    """`captions_train2014.json` and `captions_val2014.json` (each when it has images); `file_name`
    is the bare file name."""
    written = []
    for split in ("train", "val"):
        names = [name for name in captions if splits[name] == split]
        if not names:
            continue
        images = [{"id": 1000 + index, "file_name": name.rpartition("/")[2]}
                  for index, name in enumerate(names)]
        pairs = [(1000 + index, text) for index, name in enumerate(names) for text in captions[name]]
        annotations = [{"id": number, "image_id": image, "caption": text}
                       for number, (image, text) in enumerate(pairs)]
        path = text_dir / f"captions_{split}2014.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"info": {}, "images": images, "licenses": [],
                                    "annotations": annotations}), encoding="utf-8")
        written.append(path)
    return written


def write_coco_zip(folder: Path, captions: dict[str, list[str]], splits: dict[str, str]) -> Path:
    """`annotations_trainval2014.zip` as COCO ships it: `write_coco`'s files under `annotations/`."""
    path = folder / "annotations_trainval2014.zip"
    written = write_coco(folder / "annotations", captions, splits)
    with zipfile.ZipFile(path, "w") as archive:
        for file in written:
            archive.write(file, f"annotations/{file.name}")
    return path


def write_csv(text_dir: Path, captions: dict[str, list[str]],
              splits: dict[str, str] | None = None) -> Path:
    """`captions.csv`: `image,caption[,split]`, one row per caption."""
    path = text_dir / "captions.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "caption", *(["split"] if splits else [])])
        for name, texts in captions.items():
            for text in texts:
                writer.writerow([name, text, *([splits[name]] if splits else [])])
    return path
