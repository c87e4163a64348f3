"""The epoch table: a few fixed test images captioned by the model of every epoch, as the captioner
learns, beside each epoch's validation BLEU-4 and with the chosen epoch marked.

This module chooses the images and captions them; `report` and `sample_plots` beside it draw the
table. The chosen epoch's captions come from the train stage's published model (models/model.keras),
the others' from its per-epoch models (models/epochs/epoch_NNN.keras, written with
train.save_every_epoch; without them the table has the chosen epoch's row alone). For an ensemble
the rows are its first member's epochs (models/members/member_1), and a last row, the chosen one, is
the ensemble's. Every model decodes as `python -m captioner predict` does.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from captioner.core.errors import PipelineError
from captioner.core.files import read_json
from captioner.core.params import DecodingSettings
from captioner.core.paths import (
    EPOCH_MODEL_NAME,
    FEATURES_RECORD,
    PARAMS_FILE,
    ModelFolder,
)
from captioner.core.phases import SELF_CRITICAL
from captioner.model.artifacts import CaptionModel, load_model
from captioner.model.decoding import Decoder
from captioner.model.network import ensemble_members, reads_regions
from captioner.model.splits import Split


@dataclass(frozen=True)
class TrainRecords:
    """What the train stage left for the table: its models folder, its table of every epoch and
    its summary (the chosen epoch of each member)."""

    models: ModelFolder
    epochs: Path
    summary: Path


@dataclass(frozen=True)
class EpochRow:
    """One epoch: its label (its number, from 1), its validation BLEU-4 (None if train logged
    none), whether it is the chosen model (models/model.keras), its caption of each sample image,
    and whether it was a self-critical epoch. The ensemble's row is labelled "ensemble of N"."""

    label: str
    bleu4: float | None
    chosen: bool
    captions: list[str]
    self_critical: bool = False
    ensemble: bool = False

    def title(self) -> str:
        """The label, tagged "self-critical" and "chosen" where they apply."""
        tags = [tag for tag, applies in (("self-critical", self.self_critical),
                                         ("chosen", self.chosen)) if applies]
        return f"{self.label} ({', '.join(tags)})" if tags else self.label


@dataclass(frozen=True)
class EpochTable:
    """Sample image ids (the columns), one row per epoch with a saved model, the epochs that train
    logged without saving their model, the decoding settings in words, and the chosen model's file."""

    images: list[str]
    rows: list[EpochRow]
    unsaved_epochs: list[int]
    decoding: str
    chosen_model: Path


def unsaved_note(table: EpochTable) -> str:
    """A sentence naming the epochs left out for lack of a saved model ("" when none is)."""
    if not table.unsaved_epochs:
        return ""
    listed = ", ".join(map(str, table.unsaved_epochs))
    return f"Epochs {listed}: no saved model (train.save_every_epoch is false)."


def choose_samples(sample_images: int | list[str], test: Split, test_path: Path) -> list[int]:
    """Indices into `test.records` (read from `test_path`) of the sample images: the first
    `sample_images` (all, if there are fewer), or the images listed, in their order, each checked
    to be a test image with features."""
    if isinstance(sample_images, int):
        return list(range(min(sample_images, len(test.records))))
    index = {record["image"]: position for position, record in enumerate(test.records)}
    for image in sample_images:
        if image in test.without_features:
            raise PipelineError(f"{PARAMS_FILE}: evaluate.sample_images: {image} has no image "
                                f"features (undecodable, see {FEATURES_RECORD})")
        if image not in index:
            raise PipelineError(f"{PARAMS_FILE}: evaluate.sample_images: {image} is not a test image "
                                f"(not in {test_path})")
    return [index[image] for image in sample_images]


def epoch_models(best_epoch: int, models: ModelFolder) -> dict[int, Path]:
    """The model file of each epoch with one, by epoch number: the per-epoch models, with the chosen
    epoch's replaced by the folder's model (the same weights)."""
    found = {}
    if models.epochs.is_dir():
        for path in models.epochs.iterdir():
            match = EPOCH_MODEL_NAME.fullmatch(path.name)
            if match:
                found[int(match.group(1))] = path
    return dict(sorted({**found, best_epoch: models.model}.items()))


def read_logged_epochs(path: Path) -> dict[int, tuple[float, bool]]:
    """Validation BLEU-4 and whether the epoch was self-critical, by epoch, from the train stage's
    table of epochs (`epoch`, `val_bleu4` and `phase`), for its first member."""
    with open(path, newline="", encoding="utf-8") as handle:
        return {int(row["epoch"]): (float(row["val_bleu4"]), row.get("phase") == SELF_CRITICAL)
                for row in csv.DictReader(handle, delimiter="\t") if row.get("member", "1") == "1"}


def captions_by(trained: CaptionModel, features: Callable[[bool], np.ndarray],
                settings: DecodingSettings, batch_size: int) -> list[str]:
    """The caption `trained` gives each image, `features(regions)` giving the images' regions or
    pooled vectors, as the model reads."""
    return Decoder.from_model(trained.model).captions(
        features(reads_regions(trained.model)), settings, trained.vocabulary, batch_size)


def build_epoch_table(images: list[str], features: Callable[[bool], np.ndarray],
                      train: TrainRecords, settings: DecodingSettings,
                      batch_size: int) -> EpochTable:
    """Captions the sample `images` (`features(regions)` gives their regions or pooled vectors)
    with every epoch's model, and with the ensemble when train published one."""
    summary = read_json(train.summary)
    ensemble = summary.get("ensemble")
    best_epoch = summary["member_1"]["best_epoch"] if ensemble else summary["best_epoch"]
    models = epoch_models(best_epoch, train.models.member(1) if ensemble else train.models)
    logged = read_logged_epochs(train.epochs)
    rows = []
    for epoch, path in models.items():
        bleu4, self_critical = logged.get(epoch, (None, False))
        rows.append(EpochRow(str(epoch), bleu4, epoch == best_epoch and not ensemble,
                             captions_by(load_model(path), features, settings, batch_size),
                             self_critical))
    if ensemble:
        trained = load_model(train.models.model)
        rows.append(EpochRow(f"ensemble of {len(ensemble_members(trained.model))}",
                             ensemble["val_bleu4"], True,
                             captions_by(trained, features, settings, batch_size), ensemble=True))
    return EpochTable(images, rows, sorted(set(logged) - set(models)), settings.describe(),
                      train.models.model)
