"""Stage train: fits the merge captioner with teacher forcing, one epoch at a time, resumably.

Every epoch logs training loss, validation loss and validation BLEU-4 with DVCLive (step = epoch,
from 1), saves the epoch's model, keeps the best one and checkpoints the run in data/train_run, so
a killed run continues from its last finished epoch and ends exactly as an uninterrupted one.
"""

from __future__ import annotations

import dataclasses

import keras
from dvclive import Live

from captioner import params
from captioner.artifacts import save_model
from captioner.errors import run_stage
from captioner.files import read_json, read_npy, write_json
from captioner.model import build_captioner
from captioner.paths import (
    EMBEDDINGS,
    FEATURES,
    MODELS,
    TRAIN_HISTORY,
    TRAIN_LIVE,
    TRAIN_RUN,
    TRAIN_SPEED,
    VOCABULARY,
    split_file,
)
from captioner.run_state import RunFolder, fingerprint
from captioner.splits import load_features, load_split, warn_without_features
from captioner.text import PAD_ID
from captioner.training import TrainingData, seed_everything, speed_metrics, train, write_history

OPTIMIZERS = {"adam": keras.optimizers.Adam, "rmsprop": keras.optimizers.RMSprop,
              "sgd": keras.optimizers.SGD}
# DVCLive names of the summary's metrics (the per-epoch table is written by write_history).
LOGGED = {"loss": "train/loss", "val_loss": "eval/loss", "val_bleu4": "eval/bleu4"}


def new_model(config: params.TrainParams, feature_dim: int) -> keras.Model:
    keras.mixed_precision.set_global_policy(config.precision)
    model = build_captioner(read_npy(EMBEDDINGS), feature_dim, config.units, config.rnn,
                            config.dropout, config.train_embedding, config.image_init_state)
    model.compile(optimizer=OPTIMIZERS[config.optimizer](learning_rate=config.learning_rate),
                  loss=keras.losses.SparseCategoricalCrossentropy(ignore_class=PAD_ID))
    return model


def log_epoch(live: Live, number: int, logs: dict[str, float]) -> None:
    live.step = number
    for name, metric in LOGGED.items():
        live.log_metric(metric, logs[name], plot=False)
    live.next_step()


def main() -> None:
    config = params.load(params.TrainParams)
    seed_everything(config.seed)
    vocabulary, backbone = read_json(VOCABULARY), read_json(FEATURES / "backbone.json")
    features = load_features()
    splits = {name: load_split(name, features) for name in ("train", "val")}
    warn_without_features(splits)
    data = TrainingData(splits["train"].records, splits["train"].features, splits["val"].records,
                        splits["val"].features, vocabulary, config.val_bleu_images)

    run = RunFolder(TRAIN_RUN)
    progress = run.resume_or_clear(fingerprint(
        dataclasses.asdict(config),
        [VOCABULARY, split_file("train"), split_file("val"), EMBEDDINGS, FEATURES]))
    model = new_model(config, features.vectors.shape[1])
    if progress.epochs_done:
        print(f"train: resuming after epoch {progress.epochs_done} of an interrupted run")
        run.load_checkpoint(progress, model)

    def report(number: int, logs: dict[str, float]) -> None:
        log_epoch(live, number, logs)
        print(f"train: epoch {number}: loss {logs['loss']:.4f}, val_loss {logs['val_loss']:.4f}, "
              f"val_bleu4 {logs['val_bleu4']:.4f}, {logs['fit_seconds']:.1f} s", flush=True)

    with Live(dir=str(TRAIN_LIVE), dvcyaml=None, save_dvc_exp=False, report=None) as live:
        for number, logs in enumerate(progress.history, start=1):
            log_epoch(live, number, logs)
        progress = train(model, data, config, run, progress,
                         lambda trained, path: save_model(trained, path, vocabulary, backbone),
                         report)
        live.summary["best_epoch"] = progress.best_epoch
        live.summary[f"best_{config.monitor}"] = progress.best
        live.summary["images_without_features"] = {
            name: len(split.without_features) for name, split in splits.items()}
    write_history(TRAIN_HISTORY, progress)
    write_json(TRAIN_SPEED, speed_metrics(progress, data))
    run.publish(MODELS)
    print(f"train: best epoch {progress.best_epoch} ({config.monitor} {progress.best:.4f})")


if __name__ == "__main__":
    run_stage(main)
