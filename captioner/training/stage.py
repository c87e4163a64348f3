"""The train stage's work: reads the splits, embeddings and features, trains the captioners that
`train.ensemble` asks for, one after the other, each with its own seed, and writes them as the
model: a lone one as it is, several as one ensemble (captioner.training.ensemble).

Each captioner trains in its own run folder (so a killed run resumes in the member it was in), logs
its epochs to DVCLive's summary (under member_N/ in an ensemble) and prints a line per epoch. At the
end the models folder is replaced at once, then every epoch goes to the history table and the
speeds to their file. Under multi_worker every machine trains; only the chief writes anything.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from dvclive import Live

from captioner.core.files import read_json, read_npy, write_json
from captioner.core.params import TrainParams
from captioner.model.artifacts import save_model
from captioner.model.decoding import Decoder
from captioner.model.network import CaptionLoss, reads_regions
from captioner.model.splits import Split, load_features, load_split, warn_without_features
from captioner.training import distribute, loop
from captioner.training.data import MirroredView, TrainingData, seed_everything
from captioner.training.ensemble import member_configs, publish_ensemble
from captioner.training.history import speed_metrics, write_history
from captioner.training.run_state import Progress, RunFolder, fingerprint

# DVCLive names of the summary's metrics (the per-epoch table is written by history.write_history).
# A cross-entropy epoch has a loss, a self-critical one a reward.
LOGGED = {"loss": "train/loss", "reward": "train/reward", "val_loss": "eval/loss",
          "val_bleu4": "eval/bleu4", "val_cider": "eval/cider"}


@dataclasses.dataclass(frozen=True)
class TrainInputs:
    """What the train stage reads: the tokenize stage's vocabulary and train and validation splits,
    the embed stage's matrix and the extract_features stage's folder."""

    vocabulary: Path
    train_split: Path
    val_split: Path
    embeddings: Path
    features: Path

    def files(self) -> list[Path]:
        """Every input, in a fixed order: what a run's checkpoints were made from."""
        return [self.vocabulary, self.train_split, self.val_split, self.embeddings, self.features]


@dataclasses.dataclass(frozen=True)
class TrainOutputs:
    """What the train stage writes: the models folder (laid out as core.paths.ModelFolder), DVCLive's
    folder, the table of every epoch and the speeds; `runs` is the scratch folder of runs in
    progress, kept across a killed run and removed at the end."""

    models: Path
    live: Path
    history: Path
    speed: Path
    runs: Path


@dataclasses.dataclass(frozen=True)
class Member:
    """One captioner of the run: its settings, run folder, and how its epochs are logged."""

    config: TrainParams
    run: RunFolder
    prefix: str
    heading: str


def run_fingerprint(config: TrainParams, inputs: TrainInputs) -> str:
    """What a member's run folder may be resumed by: every setting and the bytes of every input."""
    return fingerprint(dataclasses.asdict(config), inputs.files())


def members_of(config: TrainParams, scratch: Path) -> list[Member]:
    """A lone model runs in `scratch` itself and logs unprefixed; an ensemble's members each in
    scratch/member_N, logged under member_N/."""
    configs = member_configs(config)
    if len(configs) == 1:
        return [Member(configs[0], RunFolder(scratch), "", "")]
    return [Member(member, RunFolder(scratch / f"member_{number}"), f"member_{number}/",
                   f"member {number} (seed {member.seed}): ")
            for number, member in enumerate(configs, start=1)]


def epoch_reporter(live: Live | None, member: Member) -> Callable[[int, dict[str, Any]], None]:
    """What each epoch of one captioner tells: its metrics logged under the member's prefix and,
    unless replayed from an interrupted run, one line; nothing off the chief (no `live`)."""
    def report(epoch: int, logs: dict[str, Any]) -> None:
        if live is None:
            return
        live.step = epoch
        for name, metric in LOGGED.items():
            if name in logs:
                live.log_metric(member.prefix + metric, logs[name], plot=False)
        live.next_step()
        if not logs.get("replayed"):
            values = ", ".join(f"{name} {logs[name]:.4f}" for name in LOGGED if name in logs)
            print(f"train: {member.heading}epoch {epoch}: {values}, {logs['fit_seconds']:.1f} s",
                  flush=True)

    return report


@dataclasses.dataclass(frozen=True)
class Trainer:
    """What every member trains with: the data and its validation, each keyed by whether the
    captioner reads regions (True) or pooled vectors (False), the embeddings, the strategy, and how
    a model is saved."""

    data: dict[bool, TrainingData]
    validation: dict[bool, loop.Validation]
    embedding_matrix: np.ndarray
    strategy: tf.distribute.Strategy
    save: Callable[[keras.Model, Path], None]

    def train_member(self, member: Member, inputs: TrainInputs,
                     report: Callable[[int, dict[str, Any]], None]) -> Progress:
        """Trains one captioner in its run folder, resuming it if it was interrupted."""
        config, run, strategy = member.config, member.run, self.strategy
        regions = config.decoder == "attention"
        data = self.data[regions]
        seed_everything(config.seed)
        progress = distribute.chief_progress(
            strategy, run.resume_or_clear(run_fingerprint(config, inputs)))
        with strategy.scope():
            model = loop.compiled_captioner(config, self.embedding_matrix,
                                            data.train_features.shape[1:], progress.phase)
        distribute.untie_from_strategy(strategy, model)
        if progress.epochs_done:
            print(f"train: resuming after epoch {progress.epochs_done} of an interrupted run")
            distribute.load_chief_checkpoint(strategy, run, progress, model)
        for number, logs in enumerate(progress.history, start=1):
            report(number, {**logs, "replayed": True})
        with strategy.scope():
            loop.train(model, data, config, progress,
                       loop.EpochEnd(model, self.validation[regions], config, run, self.save,
                                     report))
        return progress


def load_training_data(config: TrainParams, inputs: TrainInputs
                       ) -> tuple[dict[bool, TrainingData], dict[str, Split]]:
    """The train and validation splits with the image inputs the members read (regions: True,
    pooled vectors: False) and, with train.mirrored_views, the training images' mirrored view, as
    the training loop takes them."""
    features = load_features(inputs.features)
    splits = {"train": load_split(inputs.train_split, features),
              "val": load_split(inputs.val_split, features)}
    warn_without_features(splits, inputs.features)
    vocabulary = read_json(inputs.vocabulary)
    train, val = splits["train"], splits["val"]
    data = {regions: TrainingData(
        train.records, train.image_inputs(regions), val.records, val.image_inputs(regions),
        vocabulary, config.val_bleu_images,
        MirroredView.of(train.image_inputs(regions, mirrored=True), vocabulary)
        if config.mirrored_views else None)
        for regions in sorted({decoder == "attention" for decoder in config.decoders} | {False})}
    return data, splits


def train_stage(config: TrainParams, strategy: tf.distribute.Strategy, inputs: TrainInputs,
                outputs: TrainOutputs) -> None:
    """Trains every member and, on the chief, publishes the model and writes the logs."""
    data, splits = load_training_data(config, inputs)
    trainer = Trainer(data, {regions: loop.Validation(kind, config.batch_size)
                             for regions, kind in data.items()},
                      read_npy(inputs.embeddings), strategy, functools.partial(
                          save_model, vocabulary=data[False].vocabulary,
                          backbone=read_json(inputs.features / "backbone.json")))
    chief = distribute.is_chief(strategy)
    live_or_none = (Live(dir=str(outputs.live), dvcyaml=None, save_dvc_exp=False, report=None)
                    if chief else contextlib.nullcontext())
    with distribute.run_folder(outputs.runs, chief) as scratch, live_or_none as live:
        members = members_of(config, scratch)
        progresses = []
        for member in members:
            progresses.append(trainer.train_member(member, inputs, epoch_reporter(live, member)))
            if chief:
                print(f"train: {member.heading}best epoch {progresses[-1].best_epoch} "
                      f"({loop.final_monitor(config)} {progresses[-1].best:.4f})", flush=True)
        if not chief:
            print(f"train: worker done after epoch {progresses[-1].epochs_done}; the chief wrote "
                  "the outputs")
            return
        live.summary["images_without_features"] = {
            name: len(split.without_features) for name, split in splits.items()}
        scores = publish(config, members, progresses, live, trainer, outputs.models)
        if len(members) > 1:
            shutil.rmtree(scratch)
    write_history(outputs.history, progresses)
    write_json(outputs.speed, speed_metrics(progresses, data[False]))
    if scores:
        print(f"train: ensemble of {len(members)}: " + ", ".join(
            f"{name} {value:.4f}" for name, value in scores.items()))


def publish(config: TrainParams, members: list[Member], progresses: list[Progress], live: Live,
            trainer: Trainer, models: Path) -> dict[str, float] | None:
    """Publishes the lone model, or the ensemble with every member's models, into `models` and
    records the choice in the summary; returns the ensemble's validation scores (None alone)."""
    monitor = f"best_{loop.final_monitor(config)}"
    if len(members) == 1:
        live.summary["best_epoch"], live.summary[monitor] = progresses[0].best_epoch, progresses[0].best
        members[0].run.publish(models)
        return None
    for number, progress in enumerate(progresses, start=1):
        live.summary.setdefault(f"member_{number}", {}).update(
            {"best_epoch": progress.best_epoch, monitor: progress.best})
    ensemble = publish_ensemble([member.run for member in members], models, trainer.save)
    ensemble.compile(loss=CaptionLoss(config.label_smoothing))
    scores = trainer.validation[reads_regions(ensemble)](ensemble, Decoder.from_model(ensemble))
    live.summary["ensemble"] = scores
    return scores
