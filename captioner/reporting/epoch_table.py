"""The epoch table: a few fixed test images captioned by the model of every epoch, as the captioner
learns, beside each epoch's validation BLEU-4 and with the chosen epoch marked.

This module chooses the images and captions them; `report` and `sample_plots` beside it draw the
table. The chosen epoch's captions come from models/model.keras, the others' from the
train stage's models/epochs/epoch_NNN.keras (written with train.save_every_epoch; without them the
table has the chosen epoch's row alone). For an ensemble the rows are its first member's epochs
(models/members/member_1), and a last row, the chosen one, is the ensemble's. Every model decodes
as `python -m captioner predict` does.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from captioner.core.errors import PipelineError
from captioner.core.files import read_json
from captioner.core.params import EvaluateParams
from captioner.core.paths import (
    BEST_MODEL,
    EPOCH_MODEL_NAME,
    EPOCH_MODELS,
    FEATURES_RECORD,
    PARAMS_FILE,
    TRAIN_HISTORY,
    TRAIN_SUMMARY,
    member_folder,
    split_file,
)
from captioner.core.text import decode
from captioner.model.artifacts import CaptionModel, load_model
from captioner.model.decoding import Decoder
from captioner.model.network import ensemble_members
from captioner.model.splits import Split
from captioner.training.run_state import SELF_CRITICAL


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
    logged without saving their model, and the decoding settings in words."""

    images: list[str]
    rows: list[EpochRow]
    unsaved_epochs: list[int]
    decoding: str


def unsaved_note(table: EpochTable) -> str:
    """A sentence naming the epochs left out for lack of a saved model ("" when none is)."""
    if not table.unsaved_epochs:
        return ""
    listed = ", ".join(map(str, table.unsaved_epochs))
    return f"Epochs {listed}: no saved model (train.save_every_epoch is false)."


def choose_samples(sample_images: int | list[str], test: Split) -> list[int]:
    """Indices into `test.records` of the sample images: the first `sample_images` (all, if there are
    fewer), or the images listed, in their order, each checked to be a test image with features."""
    if isinstance(sample_images, int):
        return list(range(min(sample_images, len(test.records))))
    index = {record["image"]: position for position, record in enumerate(test.records)}
    for image in sample_images:
        if image in test.without_features:
            raise PipelineError(f"{PARAMS_FILE}: evaluate.sample_images: {image} has no image "
                                f"features (undecodable, see {FEATURES_RECORD})")
        if image not in index:
            raise PipelineError(f"{PARAMS_FILE}: evaluate.sample_images: {image} is not a test image "
                                f"(not in {split_file('test')})")
    return [index[image] for image in sample_images]


def epoch_models(best_epoch: int, epochs_folder: Path = EPOCH_MODELS,
                 best_model: Path = BEST_MODEL) -> dict[int, Path]:
    """The model file of each epoch with one, by epoch number: the per-epoch models, with the chosen
    epoch's replaced by `best_model` (the same weights)."""
    models = {}
    if epochs_folder.is_dir():
        for path in epochs_folder.iterdir():
            match = EPOCH_MODEL_NAME.fullmatch(path.name)
            if match:
                models[int(match.group(1))] = path
    return dict(sorted({**models, best_epoch: best_model}.items()))


def read_logged_epochs(path: Path = TRAIN_HISTORY) -> dict[int, tuple[float, bool]]:
    """Validation BLEU-4 and whether the epoch was self-critical, by epoch, from the train stage's
    table of epochs (`epoch`, `val_bleu4` and `phase`), for its first member."""
    with open(path, newline="", encoding="utf-8") as handle:
        return {int(row["epoch"]): (float(row["val_bleu4"]), row.get("phase") == SELF_CRITICAL)
                for row in csv.DictReader(handle, delimiter="\t") if row.get("member", "1") == "1"}


def caption_with(model_path: Path, features: np.ndarray, config: EvaluateParams) -> list[str]:
    """The caption the model in `model_path` gives each feature row, decoded with `config`."""
    return captions_of(load_model(model_path), features, config)


def captions_of(trained: CaptionModel, features: np.ndarray, config: EvaluateParams) -> list[str]:
    """The caption `trained` gives each feature row, decoded with `config`."""
    ids = Decoder.from_model(trained.model).caption_ids(
        features, config.beam_size, config.max_length, config.length_penalty, config.batch_size)
    return [decode(caption, trained.vocabulary) for caption in ids]


def describe_decoding(config: EvaluateParams) -> str:
    """The decoding settings in words, as the table's legend gives them."""
    search = "greedy" if config.beam_size == 1 else f"beam size {config.beam_size}"
    return f"{search}, length penalty {config.length_penalty:g}, at most {config.max_length} words"


def build_epoch_table(images: list[str], features: np.ndarray, config: EvaluateParams) -> EpochTable:
    """Captions the sample `images` (their feature rows in `features`) with every epoch's model,
    and with the ensemble when train published one."""
    summary = read_json(TRAIN_SUMMARY)
    ensemble = summary.get("ensemble")
    if ensemble:
        member = member_folder(1)
        best_epoch = summary["member_1"]["best_epoch"]
        models = epoch_models(best_epoch, member / EPOCH_MODELS.name, member / BEST_MODEL.name)
    else:
        best_epoch = summary["best_epoch"]
        models = epoch_models(best_epoch)
    logged = read_logged_epochs()
    rows = []
    for epoch, path in models.items():
        bleu4, self_critical = logged.get(epoch, (None, False))
        rows.append(EpochRow(str(epoch), bleu4, epoch == best_epoch and not ensemble,
                             caption_with(path, features, config), self_critical))
    if ensemble:
        trained = load_model(BEST_MODEL)
        rows.append(EpochRow(f"ensemble of {len(ensemble_members(trained.model))}",
                             ensemble["val_bleu4"], True, captions_of(trained, features, config),
                             ensemble=True))
    return EpochTable(images, rows, sorted(set(logged) - set(models)), describe_decoding(config))
