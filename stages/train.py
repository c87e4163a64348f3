"""Stage train: fits the merge captioner with teacher forcing (cross-entropy), then fine-tunes the
last (or, with train.self_critical_start: best, the best) cross-entropy model with self-critical
training (CIDEr-D reward), one epoch at a time, resumably.

After every epoch it saves the epoch's model, keeps the best one of the phase, checkpoints the run
in data/train_run (so a killed run continues from its last finished epoch and ends exactly as an
uninterrupted one) and logs the epoch to DVCLive's summary; at the end it writes every epoch's
phase, loss or reward, val_loss, val_bleu4 and val_cider to metrics/train/epochs.tsv.

Under train.distribute multi_worker every machine runs it (see captioner.distribute); only the
chief writes anything into the project.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

from dvclive import Live

from captioner import devices, distribute, params, paths, training
from captioner.artifacts import save_model
from captioner.errors import run_stage
from captioner.files import read_json, read_npy, write_json
from captioner.run_state import RunFolder, fingerprint
from captioner.splits import load_features, load_split, warn_without_features

# DVCLive names of the summary's metrics (the per-epoch table is written by training.write_history).
# A cross-entropy epoch has a loss, a self-critical one a reward.
LOGGED = {"loss": "train/loss", "reward": "train/reward", "val_loss": "eval/loss",
          "val_bleu4": "eval/bleu4", "val_cider": "eval/cider"}


def log_epoch(live: Live, number: int, logs: dict[str, Any]) -> None:
    live.step = number
    for name, metric in LOGGED.items():
        if name in logs:
            live.log_metric(metric, logs[name], plot=False)
    live.next_step()


def main() -> None:
    config = params.load(params.TrainParams)
    strategy = distribute.strategy_for(config.distribute)
    print(f"train: devices: {devices.describe(strategy)}", flush=True)
    training.seed_everything(config.seed)
    vocabulary, backbone = read_json(paths.VOCABULARY), read_json(paths.FEATURES / "backbone.json")
    features = load_features()
    splits = {name: load_split(name, features) for name in ("train", "val")}
    warn_without_features(splits)
    data = training.TrainingData(splits["train"].records, splits["train"].features,
                                 splits["val"].records, splits["val"].features, vocabulary,
                                 config.val_bleu_images)

    chief = distribute.is_chief(strategy)
    with distribute.run_folder(paths.TRAIN_RUN, chief) as run_folder:
        run = RunFolder(run_folder)
        inputs = [paths.VOCABULARY, paths.split_file("train"), paths.split_file("val"),
                  paths.EMBEDDINGS, paths.FEATURES]
        progress = distribute.chief_progress(
            strategy, run.resume_or_clear(fingerprint(dataclasses.asdict(config), inputs)))
        with strategy.scope():
            model = training.compiled_captioner(config, read_npy(paths.EMBEDDINGS),
                                                features.vectors.shape[1], progress.phase)
        distribute.untie_from_strategy(strategy, model)
        if progress.epochs_done:
            print(f"train: resuming after epoch {progress.epochs_done} of an interrupted run")
            distribute.load_chief_checkpoint(strategy, run, progress, model)
        save = functools.partial(save_model, vocabulary=vocabulary, backbone=backbone)
        if not chief:
            with strategy.scope():
                progress = training.train(model, data, config, run, progress, save,
                                          lambda number, logs: None)
            print(f"train: worker done after epoch {progress.epochs_done}; the chief wrote the "
                  "outputs")
            return

        def report(number: int, logs: dict[str, Any]) -> None:
            log_epoch(live, number, logs)
            values = ", ".join(f"{name} {logs[name]:.4f}" for name in LOGGED if name in logs)
            print(f"train: epoch {number}: {values}, {logs['fit_seconds']:.1f} s", flush=True)

        with (Live(dir=str(paths.TRAIN_LIVE), dvcyaml=None, save_dvc_exp=False, report=None) as live,
              strategy.scope()):
            for number, logs in enumerate(progress.history, start=1):
                log_epoch(live, number, logs)
            progress = training.train(model, data, config, run, progress, save, report)
            live.summary["best_epoch"] = progress.best_epoch
            live.summary[f"best_{training.final_monitor(config)}"] = progress.best
            live.summary["images_without_features"] = {
                name: len(split.without_features) for name, split in splits.items()}
        training.write_history(paths.TRAIN_HISTORY, progress)
        write_json(paths.TRAIN_SPEED, training.speed_metrics(progress, data))
        run.publish(paths.MODELS)
    print(f"train: best epoch {progress.best_epoch} ({training.final_monitor(config)} "
          f"{progress.best:.4f})")


if __name__ == "__main__":
    run_stage(main)
