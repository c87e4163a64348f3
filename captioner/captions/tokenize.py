"""The tokenize stage's work: a captioned image collection in, the vocabulary and encoded splits out.

Reads the captions in the chosen format, keeps those of the images present, splits them, builds the
vocabulary from the training captions and streams each split's records to its file. Only the raw
captions stay in memory; a caption's cleaned words and token ids live as long as its record.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from captioner.captions.collect import Collection, ImageIndex, collect, make_splits
from captioner.captions.formats import open_source
from captioner.captions.formats.base import Skips, TextFolder
from captioner.core.errors import PipelineError
from captioner.core.files import write_json, write_jsonl
from captioner.core.image_files import image_id, list_images
from captioner.core.params import TokenizeParams
from captioner.core.paths import VOCABULARY, split_file
from captioner.core.text import UNK_ID, build_vocabulary, clean, encode


@dataclass
class Tally:
    """What encoding found: training tokens, unknown ones among them, and truncated captions."""

    train_tokens: int = 0
    train_unknown: int = 0
    truncated: int = 0


def tokenize_collection(
    config: TokenizeParams, images_dir: Path, text_dir: Path, output_dir: Path,
    text_source: Path | None = None,
) -> dict[str, Any]:
    """Writes `vocab.json` and `{train,val,test}.jsonl` into `output_dir`; returns the metrics.
    `text_source` is the download stage's record of where the captions came from."""
    image_ids = [image_id(path, images_dir) for path in list_images(images_dir)]
    if not image_ids:
        raise PipelineError(f"{images_dir}: no images found; run the download stage first")
    skips = Skips()
    format_name, source = open_source(config.format, TextFolder.read(text_dir, text_source), skips)
    collection = collect(source, ImageIndex(image_ids), skips)
    skips.warn()
    without_captions = collection.without_captions(image_ids)
    if without_captions:
        print(f"warning: {images_dir}: {len(without_captions)} images have no caption and are left "
              f"out, the first {without_captions[0]}", file=sys.stderr)
    splits, sources = make_splits(collection, {"val": config.val_images, "test": config.test_images},
                                  config.max_carved_fraction, config.seed)
    vocabulary = build_vocabulary(
        (clean(caption) for image in splits["train"] for caption in collection.images[image].captions),
        config.min_count,
    )
    word_ids = {word: index for index, word in enumerate(vocabulary)}
    write_json(output_dir / VOCABULARY.name, vocabulary)
    tally = Tally()
    for name, images in splits.items():
        write_jsonl(output_dir / split_file(name).name,
                    records(images, collection, word_ids, config.max_length, tally, name == "train"))
    return {
        "format": format_name,
        "splits": {name: {"images": len(images),
                          "captions": sum(len(collection.images[i].captions) for i in images)}
                   for name, images in splits.items()},
        "dropped_captions": dict(sorted(skips.counts.items())),
        "dropped_first_line": dict(sorted(skips.first.items())),
        "images_without_captions": len(without_captions),
        "validation": sources["val"],
        "test_split": sources["test"],
        "vocab_size": len(vocabulary),
        "train_unknown_share": round(tally.train_unknown / max(tally.train_tokens, 1), 5),
        "truncated_captions": tally.truncated,
    }


def records(images: list[str], collection: Collection, word_ids: dict[str, int], max_length: int,
            tally: Tally, is_train: bool) -> Iterator[dict[str, Any]]:
    """One record per image: its id, raw captions and token ids; counts into `tally` as it goes."""
    for image in images:
        captions = collection.images[image].captions
        tokens = []
        for caption in captions:
            words = clean(caption)
            ids = encode(words, word_ids, max_length)
            tally.truncated += len(words) + 2 > max_length
            if is_train:
                tally.train_tokens += len(ids) - 2
                tally.train_unknown += ids.count(UNK_ID)
            tokens.append(ids)
        yield {"image": image, "captions": captions, "tokens": tokens}


def summary(metrics: dict[str, Any]) -> str:
    """The stage's closing line."""
    sizes = ", ".join(f"{name} {split['images']} images" for name, split in metrics["splits"].items())
    return f"tokenize: {sizes}; vocabulary {metrics['vocab_size']} words"
