"""Stage train: fits the merge captioner with teacher forcing (cross-entropy), then fine-tunes the
last (or, with train.self_critical_start: best, the best) cross-entropy model with self-critical
training (CIDEr-D reward), one epoch at a time, resumably; with train.ensemble > 1 it trains that
many captioners in turn, each with its own seed, and publishes them as one ensemble.

After every epoch it saves the epoch's model, keeps the best one of the phase, checkpoints the run
in data/train_run (so a killed run continues from its last finished epoch and ends exactly as an
uninterrupted one) and logs the epoch to DVCLive's summary; at the end it writes every epoch's
member, phase, loss or reward, val_loss, val_bleu4 and val_cider to metrics/train/epochs.tsv.
An ensemble's members are in models/members/member_N (each laid out as models/ is for one model),
the ensemble in models/model.keras, and its own validation scores in the summary.

Under train.distribute multi_worker every machine runs it (see captioner.distribute); only the
chief writes anything into the project.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import shutil
from collections.abc import Callable
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from dvclive import Live

from captioner import devices, distribute, params, paths, training
from captioner.artifacts import save_model
from captioner.decoding import Decoder
from captioner.errors import run_stage
from captioner.files import atomic_path, read_json, read_npy, write_json
from captioner.run_state import Progress, RunFolder, fingerprint
from captioner.splits import load_features, load_split, warn_without_features

# DVCLive names of the summary's metrics (the per-epoch table is written by training.write_history).
# A cross-entropy epoch has a loss, a self-critical one a reward. An ensemble's members log theirs
# under member_N/.
LOGGED = {"loss": "train/loss", "reward": "train/reward", "val_loss": "eval/loss",
          "val_bleu4": "eval/bleu4", "val_cider": "eval/cider"}
INPUTS = [paths.VOCABULARY, paths.split_file("train"), paths.split_file("val"), paths.EMBEDDINGS,
          paths.FEATURES]


def log_epoch(live: Live, prefix: str, number: int, logs: dict[str, Any]) -> None:
    live.step = number
    for name, metric in LOGGED.items():
        if name in logs:
            live.log_metric(prefix + metric, logs[name], plot=False)
    live.next_step()


def epoch_reporter(live: Live | None, prefix: str,
                   heading: str) -> Callable[[int, dict[str, Any]], None]:
    """What each epoch of one captioner tells: its metrics logged under `prefix` and, unless
    replayed from an interrupted run, one line beginning with `heading`; nothing off the chief."""
    def report(epoch: int, logs: dict[str, Any]) -> None:
        if live is None:
            return
        log_epoch(live, prefix, epoch, logs)
        if not logs.get("replayed"):
            values = ", ".join(f"{name} {logs[name]:.4f}" for name in LOGGED if name in logs)
            print(f"train: {heading}epoch {epoch}: {values}, {logs['fit_seconds']:.1f} s", flush=True)

    return report


def train_member(config: params.TrainParams, data: training.TrainingData,
                 validation: training.Validation, embedding_matrix: np.ndarray,
                 strategy: tf.distribute.Strategy, run: RunFolder, save: Callable,
                 report: Callable[[int, dict[str, Any]], None]) -> Progress:
    """Trains one captioner (config.seed seeds it) in `run`, resuming it if it was interrupted."""
    training.seed_everything(config.seed)
    progress = distribute.chief_progress(
        strategy, run.resume_or_clear(fingerprint(dataclasses.asdict(config), INPUTS)))
    with strategy.scope():
        model = training.compiled_captioner(config, embedding_matrix,
                                            data.train_features.shape[1], progress.phase)
    distribute.untie_from_strategy(strategy, model)
    if progress.epochs_done:
        print(f"train: resuming after epoch {progress.epochs_done} of an interrupted run")
        distribute.load_chief_checkpoint(strategy, run, progress, model)
    for number, logs in enumerate(progress.history, start=1):
        report(number, {**logs, "replayed": True})
    with strategy.scope():
        return training.train(model, data, validation, config, run, progress, save, report)


def main() -> None:
    config = params.load(params.TrainParams)
    strategy = distribute.strategy_for(config.distribute)
    print(f"train: devices: {devices.describe(strategy)}", flush=True)
    vocabulary, backbone = read_json(paths.VOCABULARY), read_json(paths.FEATURES / "backbone.json")
    features = load_features()
    splits = {name: load_split(name, features) for name in ("train", "val")}
    warn_without_features(splits)
    data = training.TrainingData(splits["train"].records, splits["train"].features,
                                 splits["val"].records, splits["val"].features, vocabulary,
                                 config.val_bleu_images)
    validation = training.Validation(data, config.batch_size)
    embedding_matrix = read_npy(paths.EMBEDDINGS)
    save = functools.partial(save_model, vocabulary=vocabulary, backbone=backbone)
    members = training.member_configs(config)
    chief = distribute.is_chief(strategy)
    live_or_none = (Live(dir=str(paths.TRAIN_LIVE), dvcyaml=None, save_dvc_exp=False, report=None)
                    if chief else contextlib.nullcontext())

    with distribute.run_folder(paths.TRAIN_RUN, chief) as scratch, live_or_none as live:
        runs, progresses = [], []
        for number, member in enumerate(members, start=1):
            alone = len(members) == 1
            run = RunFolder(scratch if alone else scratch / f"member_{number}")
            heading = "" if alone else f"member {number} (seed {member.seed}): "
            report = epoch_reporter(live, "" if alone else f"member_{number}/", heading)
            progress = train_member(member, data, validation, embedding_matrix, strategy, run, save,
                                    report)
            runs.append(run)
            progresses.append(progress)
            if chief:
                print(f"train: {heading}best epoch {progress.best_epoch} "
                      f"({training.final_monitor(config)} {progress.best:.4f})", flush=True)
        if not chief:
            print(f"train: worker done after epoch {progresses[-1].epochs_done}; the chief wrote "
                  "the outputs")
            return
        monitor = f"best_{training.final_monitor(config)}"
        live.summary["images_without_features"] = {
            name: len(split.without_features) for name, split in splits.items()}
        ensemble_scores = None
        if len(runs) == 1:
            live.summary["best_epoch"], live.summary[monitor] = (progresses[0].best_epoch,
                                                                 progresses[0].best)
            runs[0].publish(paths.MODELS)
        else:
            for number, progress in enumerate(progresses, start=1):
                live.summary.setdefault(f"member_{number}", {}).update(
                    {"best_epoch": progress.best_epoch, monitor: progress.best})
            ensemble = training.load_ensemble([run.best_model for run in runs])
            publish_ensemble(runs, ensemble, save)
            shutil.rmtree(scratch)
            ensemble.compile(loss=training.caption_loss())
            ensemble_scores = validation(ensemble, Decoder.from_model(ensemble))
            live.summary["ensemble"] = ensemble_scores
    training.write_history(paths.TRAIN_HISTORY, progresses)
    write_json(paths.TRAIN_SPEED, training.speed_metrics(progresses, data))
    if ensemble_scores:
        print(f"train: ensemble of {len(runs)}: " + ", ".join(
            f"{name} {value:.4f}" for name, value in ensemble_scores.items()))


def publish_ensemble(runs: list[RunFolder], ensemble: keras.Model, save: Callable) -> None:
    """Replaces the models folder by the ensemble and each member's models."""
    with atomic_path(paths.MODELS) as folder:
        folder.mkdir()
        save(ensemble, folder / paths.BEST_MODEL.name)
        for number, run in enumerate(runs, start=1):
            run.copy_to(folder / paths.member_folder(number).relative_to(paths.MODELS))


if __name__ == "__main__":
    run_stage(main)
