"""What the model card measures of the model's weak points: the test images it captions worst, the
captions it says most often, and what it says of photos unlike Flickr8k's, with the beam scores that
fail to tell those captions apart."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from captioner.core.errors import PipelineError
from captioner.core.files import read_json
from captioner.inference.captioning import Caption, ImageCaptioner
from captioner.inputs.pixels import BadImage, load_pixels
from captioner.model.scoring import per_image_cider
from captioner.publishing.card import NEAR_ZERO_CIDER

# The photos folder's list of its photos: file, what each shows, its source and licence.
PHOTO_LIST = "photos.json"
PHOTO_KEYS = ("file", "shows", "source", "licence")


def worst_captioned(rows: Sequence[Mapping[str, Any]], count: int
                    ) -> tuple[list[dict[str, Any]], int]:
    """The `count` test rows (evaluate's captions.jsonl) of lowest CIDEr, lowest first, each with its
    caption, CIDEr and two of its references; and how many rows score under NEAR_ZERO_CIDER."""
    cider = per_image_cider({row["image"]: row["caption"] for row in rows},
                            {row["image"]: row["references"] for row in rows})
    worst = sorted(rows, key=lambda row: (cider[row["image"]], row["image"]))[:count]
    return ([{"image": row["image"], "caption": row["caption"],
              "cider": round(cider[row["image"]], 4), "references": list(row["references"][:2])}
             for row in worst], sum(score < NEAR_ZERO_CIDER for score in cider.values()))


def most_repeated(captions: Sequence[str], count: int) -> list[dict[str, Any]]:
    """The `count` captions said of the most test images, with how many."""
    said = Counter(captions).most_common(count)
    return [{"caption": caption, "images": images} for caption, images in said if images > 1]


@dataclass(frozen=True)
class Photo:
    """A photo unlike the training data's, with what a person would say it shows."""

    file: str
    shows: str
    source: str
    licence: str


def read_photos(folder: Path) -> list[Photo]:
    """The photos folder's list (photos.json), each file checked to be there."""
    listing = folder / PHOTO_LIST
    try:
        entries = read_json(listing)
        photos = [Photo(**{key: str(entry[key]) for key in PHOTO_KEYS}) for entry in entries]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise PipelineError(f"{listing}: not a list of photos with {', '.join(PHOTO_KEYS)}: "
                            f"{error!r}") from None
    missing = [photo.file for photo in photos if not (folder / photo.file).is_file()]
    if missing:
        raise PipelineError(f"{listing}: lists {missing[0]}, which is not in {folder}")
    return photos


def caption_photos(captioner: ImageCaptioner, folder: Path, photos: Sequence[Photo]
                   ) -> list[dict[str, Any]]:
    """The model's caption of each photo and its beam score, beside what the photo shows."""
    try:
        pixels = np.stack([load_pixels(folder / photo.file) for photo in photos])
    except BadImage as error:
        raise PipelineError(f"{folder}: a photo cannot be read: {error}") from None
    captions = captioner.caption_pixels(pixels)
    return [{"file": photo.file, "shows": photo.shows, "caption": caption.caption,
             "score": round(best_score(caption), 4), "source": photo.source, "licence": photo.licence}
            for photo, caption in zip(photos, captions, strict=True)]


def best_score(caption: Caption) -> float:
    """The ranking score of the caption the beam chose."""
    return float(caption.alternatives[0]["score"])


def score_quartiles(scores: Sequence[float]) -> dict[str, float]:
    """The lower quartile, median and upper quartile of beam scores."""
    low, median, high = np.percentile(np.asarray(scores, dtype=np.float64), [25, 50, 75])
    return {"q1": round(float(low), 4), "median": round(float(median), 4), "q3": round(float(high), 4)}
