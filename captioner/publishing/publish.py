"""The publish stage's work: copies the train stage's model into the artifact folder and writes its
model card from what the earlier stages recorded, evaluate's captions, and the model's captions of
the photos unlike Flickr8k's."""

from __future__ import annotations

import dataclasses
import datetime
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from captioner.captions.formats.base import GIVEN_SPLIT
from captioner.core.files import atomic_path, read_json, read_jsonl, write_json
from captioner.core.params import (
    EmbedParams,
    EvaluateParams,
    ExtractFeaturesParams,
    TokenizeParams,
    TrainParams,
)
from captioner.core.paths import ModelFolder
from captioner.inference.captioning import ImageCaptioner
from captioner.inference.model_card import CARD_JSON
from captioner.model.artifacts import model_info_path
from captioner.model.network import reads_regions
from captioner.model.splits import load_features, load_split
from captioner.publishing.card import (
    CARD_MARKDOWN,
    PUBLISHED_RESULTS,
    headline,
    render_markdown,
)
from captioner.publishing.limitations import (
    best_score,
    caption_photos,
    most_repeated,
    read_photos,
    score_quartiles,
    worst_captioned,
)
from captioner.training.ensemble import member_configs
from captioner.training.loop import final_monitor

NAME = "captioner"
DESCRIPTION = "an image caption generator"
# Params that change only how fast a stage runs: left out of the card, as dvc.yaml leaves them out
# of the stage's params.
SPEED_ONLY = {"extract_features": {"decode_threads"}}
# The coco-caption scores of metrics/eval.json.
SCORES = ("bleu4", "cider", "meteor", "bleu_1", "bleu_2", "bleu_3", "rouge_l")
WORST_IMAGES = 5
REPEATED_CAPTIONS = 5


@dataclass(frozen=True)
class PublishInputs:
    """What the publish stage reads: the train stage's models folder and summary; the records of
    the data stages; evaluate's scores and captions; the features and test split (the beam scores of
    the test captions); and the folder of photos unlike the training data's."""

    models: Path
    download_record: Path
    tokenize_record: Path
    pretrained_record: Path
    train_summary: Path
    eval_metrics: Path
    test_captions: Path
    features: Path
    test_split: Path
    photos: Path


@dataclass(frozen=True)
class StageParams:
    """The params of the stages that shaped the model, reported in the card."""

    tokenize: TokenizeParams
    embed: EmbedParams
    extract_features: ExtractFeaturesParams
    train: TrainParams
    evaluate: EvaluateParams


def chosen_members(train: TrainParams, summary: dict[str, Any]) -> list[dict[str, Any]]:
    """Each member's decoder, seed, chosen epoch and the validation figure that chose it, from the
    train stage's summary (a lone model's has no member keys)."""
    monitor = final_monitor(train)
    members = member_configs(train)
    entries = [summary[f"member_{number}"] for number in range(1, len(members) + 1)] \
        if len(members) > 1 else [summary]
    return [{"member": number, "decoder": member.decoder, "seed": member.seed,
             "best_epoch": entry["best_epoch"], "monitor": monitor,
             "best": round(entry[f"best_{monitor}"], 4)}
            for number, (member, entry) in enumerate(zip(members, entries, strict=True), start=1)]


def _dataset(tokenized: dict[str, Any], download: dict[str, Any]) -> str:
    """The data in a few words: the images' source (its file or folder name) and the format."""
    images = Path(download["archives"]["images"]["source"]).name
    return f"{images} ({tokenized['format']} captions)"


def _published_results(tokenized: dict[str, Any]) -> list[dict[str, Any]]:
    """Published Flickr8k results: comparable only on Flickr8k's own test split."""
    official = tokenized["format"] == "flickr8k" and tokenized.get("test_split") == GIVEN_SPLIT
    return list(PUBLISHED_RESULTS) if official else []


def _beam_scores(captioner: ImageCaptioner, inputs: PublishInputs) -> list[float]:
    """The beam score of the model's caption of every test image."""
    split = load_split(inputs.test_split, load_features(inputs.features))
    captions = captioner.caption_features(split.image_inputs(reads_regions(captioner.trained.model)))
    return [best_score(caption) for caption in captions]


def write_card(inputs: PublishInputs, params: StageParams, out: Path) -> dict[str, Any]:
    """Publishes the model into the `out` folder (replaced at once): model.keras, model.json,
    card.json and README.md; returns the card."""
    model = ModelFolder(inputs.models).model
    captioner = ImageCaptioner(model, params.evaluate.decoding, params.evaluate.batch_size)
    metrics, tokenized = read_json(inputs.eval_metrics), read_json(inputs.tokenize_record)
    download = read_json(inputs.download_record)
    rows = read_jsonl(inputs.test_captions)
    photos = caption_photos(captioner, inputs.photos, read_photos(inputs.photos))
    test_scores = _beam_scores(captioner, inputs)
    pretrained = read_json(inputs.pretrained_record)
    worst, near_zero = worst_captioned(rows, WORST_IMAGES)
    published = datetime.datetime.now(datetime.UTC).date().isoformat()
    card = {
        "name": NAME,
        "headline": headline(metrics, tokenized["splits"], _dataset(tokenized, download), published),
        "model": {"description": DESCRIPTION, "file": model.name, "md5": captioner.identity["md5"],
                  "backbone": captioner.trained.backbone,
                  "members": chosen_members(params.train, read_json(inputs.train_summary)),
                  "vocabulary": len(captioner.trained.vocabulary),
                  "decoding": dataclasses.asdict(params.evaluate.decoding)},
        "data": {"sources": download["archives"],
                 "splits": tokenized["splits"], "vectors": pretrained["vectors"],
                 "weights": pretrained["weights"]},
        "scores": {"model": {name: value for name, value in metrics.items()
                             if name in SCORES},
                   "retrieval_baseline": metrics["retrieval_baseline"],
                   "published": _published_results(tokenized)},
        "diversity": {name: metrics[name] for name in ("distinct_captions", "distinct_words")},
        "limitations": {
            "worst_captioned": worst, "near_zero_cider_images": near_zero,
            "most_repeated": most_repeated([row["caption"] for row in rows], REPEATED_CAPTIONS),
            "out_of_domain": photos,
            "beam_scores": {"test": score_quartiles(test_scores),
                            "out_of_domain": score_quartiles([row["score"] for row in photos])}},
        "params": {field.name: {key: value for key, value in
                                dataclasses.asdict(getattr(params, field.name)).items()
                                if key not in SPEED_ONLY.get(field.name, set())}
                   for field in dataclasses.fields(params)},
    }
    with atomic_path(out) as folder:
        folder.mkdir()
        shutil.copyfile(model, folder / model.name)
        shutil.copyfile(model_info_path(model), model_info_path(folder / model.name))
        write_json(folder / CARD_JSON, card)
        (folder / CARD_MARKDOWN).write_text(render_markdown(card), encoding="utf-8")
    return card
