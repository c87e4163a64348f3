"""The train stage's work: trains the captioners that `train.ensemble` asks for, one after the
other, each with its own seed, and publishes them: a lone model as it is, several as one ensemble
averaging their next-word probabilities.

Each member trains in its own run folder under data/train_run (so a killed run resumes in the
member it was in), logs its epochs to DVCLive's summary (under member_N/ in an ensemble) and prints a
line per epoch. At the end models/ is replaced at once: models/model.keras with the published model
and, for an ensemble, models/members/member_N laid out as models/ is for one model; then every
epoch goes to metrics/train/epochs.tsv and the speeds to metrics/speed/train.json. Under
multi_worker every machine trains; only the chief writes anything into the project.
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

from captioner.core import paths
from captioner.core.files import atomic_path, read_json, read_npy, write_json
from captioner.core.params import TrainParams
from captioner.model.artifacts import save_model
from captioner.model.decoding import Decoder
from captioner.model.network import CaptionLoss, build_ensemble
from captioner.model.splits import Split, load_features, load_split, warn_without_features
from captioner.training import distribute, loop
from captioner.training.data import TrainingData, seed_everything
from captioner.training.history import speed_metrics, write_history
from captioner.training.run_state import Progress, RunFolder, fingerprint

# DVCLive names of the summary's metrics (the per-epoch table is written by history.write_history).
# A cross-entropy epoch has a loss, a self-critical one a reward.
LOGGED = {"loss": "train/loss", "reward": "train/reward", "val_loss": "eval/loss",
          "val_bleu4": "eval/bleu4", "val_cider": "eval/cider"}
# What a run's checkpoints were made from: another content here starts the run afresh.
INPUTS = [paths.VOCABULARY, paths.split_file("train"), paths.split_file("val"), paths.EMBEDDINGS,
          paths.FEATURES]
# Seeds of an ensemble's members: train.seed, then steps of this size, far from neighbouring seeds
# (an ensemble of seed 42 shares no member with one of seed 43).
MEMBER_SEED_STEP = 1000


def member_configs(config: TrainParams) -> list[TrainParams]:
    """The settings of each captioner that `config` trains: its own, with the member's seed, for
    each of the `config.ensemble` members (a member is trained exactly as a lone model)."""
    return [dataclasses.replace(config, seed=config.seed + MEMBER_SEED_STEP * index, ensemble=1)
            for index in range(config.ensemble)]


def load_ensemble(model_paths: list[Path]) -> keras.Model:
    """The ensemble of the captioners saved at `model_paths`, uncompiled (as it is saved)."""
    return build_ensemble([keras.saving.load_model(path, safe_mode=True) for path in model_paths])


@dataclasses.dataclass(frozen=True)
class Member:
    """One captioner of the run: its settings, run folder, and how its epochs are logged."""

    config: TrainParams
    run: RunFolder
    prefix: str
    heading: str


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


def train_member(member: Member, data: TrainingData, validation: loop.Validation,
                 embedding_matrix: np.ndarray, strategy: tf.distribute.Strategy, save: Callable,
                 report: Callable[[int, dict[str, Any]], None]) -> Progress:
    """Trains one captioner in its run folder, resuming it if it was interrupted."""
    config, run = member.config, member.run
    seed_everything(config.seed)
    progress = distribute.chief_progress(
        strategy, run.resume_or_clear(fingerprint(dataclasses.asdict(config), INPUTS)))
    with strategy.scope():
        model = loop.compiled_captioner(config, embedding_matrix, data.train_features.shape[1],
                                        progress.phase)
    distribute.untie_from_strategy(strategy, model)
    if progress.epochs_done:
        print(f"train: resuming after epoch {progress.epochs_done} of an interrupted run")
        distribute.load_chief_checkpoint(strategy, run, progress, model)
    for number, logs in enumerate(progress.history, start=1):
        report(number, {**logs, "replayed": True})
    with strategy.scope():
        return loop.train(model, data, validation, config, run, progress, save, report)


def load_training_data(config: TrainParams) -> tuple[TrainingData, dict[str, Split]]:
    """The train and validation splits with their features, as the training loop takes them."""
    features = load_features()
    splits = {name: load_split(name, features) for name in ("train", "val")}
    warn_without_features(splits)
    data = TrainingData(splits["train"].records, splits["train"].features, splits["val"].records,
                        splits["val"].features, read_json(paths.VOCABULARY), config.val_bleu_images)
    return data, splits


def train_ensemble(config: TrainParams, strategy: tf.distribute.Strategy) -> None:
    """Trains every member and, on the chief, publishes the model and writes the logs."""
    data, splits = load_training_data(config)
    validation = loop.Validation(data, config.batch_size)
    embedding_matrix = read_npy(paths.EMBEDDINGS)
    save = functools.partial(save_model, vocabulary=data.vocabulary,
                             backbone=read_json(paths.FEATURES / "backbone.json"))
    chief = distribute.is_chief(strategy)
    live_or_none = (Live(dir=str(paths.TRAIN_LIVE), dvcyaml=None, save_dvc_exp=False, report=None)
                    if chief else contextlib.nullcontext())
    with distribute.run_folder(paths.TRAIN_RUN, chief) as scratch, live_or_none as live:
        members = members_of(config, scratch)
        progresses = []
        for member in members:
            progress = train_member(member, data, validation, embedding_matrix, strategy, save,
                                    epoch_reporter(live, member))
            progresses.append(progress)
            if chief:
                print(f"train: {member.heading}best epoch {progress.best_epoch} "
                      f"({loop.final_monitor(config)} {progress.best:.4f})", flush=True)
        if not chief:
            print(f"train: worker done after epoch {progresses[-1].epochs_done}; the chief wrote "
                  "the outputs")
            return
        live.summary["images_without_features"] = {
            name: len(split.without_features) for name, split in splits.items()}
        scores = publish(config, members, progresses, live, validation, save)
        if len(members) > 1:
            shutil.rmtree(scratch)
    write_history(paths.TRAIN_HISTORY, progresses)
    write_json(paths.TRAIN_SPEED, speed_metrics(progresses, data))
    if scores:
        print(f"train: ensemble of {len(members)}: " + ", ".join(
            f"{name} {value:.4f}" for name, value in scores.items()))


def publish(config: TrainParams, members: list[Member], progresses: list[Progress], live: Live,
            validation: loop.Validation, save: Callable) -> dict[str, float] | None:
    """Publishes the lone model, or the ensemble with every member's models, into models/ and
    records the choice in the summary; returns the ensemble's validation scores (None alone)."""
    monitor = f"best_{loop.final_monitor(config)}"
    if len(members) == 1:
        live.summary["best_epoch"], live.summary[monitor] = progresses[0].best_epoch, progresses[0].best
        members[0].run.publish(paths.MODELS)
        return None
    for number, progress in enumerate(progresses, start=1):
        live.summary.setdefault(f"member_{number}", {}).update(
            {"best_epoch": progress.best_epoch, monitor: progress.best})
    ensemble = load_ensemble([member.run.best_model for member in members])
    with atomic_path(paths.MODELS) as folder:
        folder.mkdir()
        save(ensemble, folder / paths.BEST_MODEL.name)
        for number, member in enumerate(members, start=1):
            member.run.copy_to(folder / paths.member_folder(number).relative_to(paths.MODELS))
    ensemble.compile(loss=CaptionLoss(config.label_smoothing))
    scores = validation(ensemble, Decoder.from_model(ensemble))
    live.summary["ensemble"] = scores
    return scores
