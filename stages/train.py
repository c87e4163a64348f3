"""Stage train: fits the merge captioner with teacher forcing, one epoch at a time, resumably.

Every epoch logs training loss, validation loss and validation BLEU-4 with DVCLive, saves the
epoch's model, keeps the best one and checkpoints the run, so a killed run continues from its last
finished epoch (see captioner.training.RunFolder) and ends exactly as an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import keras
from dvclive import Live

from captioner import params
from captioner.artifacts import (
    CAPTIONS,
    EMBEDDINGS,
    FEATURES,
    MODELS,
    load_features,
    load_split,
    save_model,
)
from captioner.decoding import Decoder
from captioner.errors import run_stage
from captioner.files import read_json, read_npy, write_json
from captioner.model import build_captioner
from captioner.text import PAD_ID
from captioner.training import (
    Progress,
    RunFolder,
    caption_dataset,
    epoch_seed,
    fingerprint,
    reseed_dropout,
    seed_everything,
    validation_bleu,
)

LIVE_DIR = Path("metrics/train")
SPEED_FILE = Path("metrics/speed/train.json")
RUN_FOLDER = Path("data/train_run")
OPTIMIZERS = {"adam": keras.optimizers.Adam, "rmsprop": keras.optimizers.RMSprop,
              "sgd": keras.optimizers.SGD}
# DVCLive names, laid out as dvc.yaml's plots expect them.
LOGGED = {"loss": "train/loss", "val_loss": "eval/loss", "val_bleu4": "eval/bleu4"}


def new_model(config: params.TrainParams, feature_dim: int) -> keras.Model:
    keras.mixed_precision.set_global_policy(config.precision)
    model = build_captioner(read_npy(EMBEDDINGS), feature_dim, config.units, config.rnn,
                            config.dropout, config.train_embedding, config.image_init_state)
    model.compile(
        optimizer=OPTIMIZERS[config.optimizer](learning_rate=config.learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(ignore_class=PAD_ID),
    )
    return model


def log_epoch(live: Live, logs: dict[str, float]) -> None:
    for name, metric in LOGGED.items():
        live.log_metric(metric, logs[name])
    live.next_step()


def main() -> None:
    config = params.load(params.TrainParams)
    seed_everything(config.seed)
    vocabulary = read_json(CAPTIONS / "vocab.json")
    backbone = read_json(FEATURES / "backbone.json")
    features = load_features()
    train, validation = load_split("train"), load_split("val")
    bleu_images = validation[:config.val_bleu_images]
    max_length = max(len(ids) for record in train for ids in record["tokens"])
    target_tokens = sum(len(ids) - 1 for record in train for ids in record["tokens"])
    train_features = features.of([record["image"] for record in train])
    validation_data = caption_dataset(
        validation, features.of([record["image"] for record in validation]), config.batch_size)
    bleu_features = features.of([record["image"] for record in bleu_images])
    bleu_references = {record["image"]: record["captions"] for record in bleu_images}

    run = RunFolder(RUN_FOLDER)
    run_fingerprint = fingerprint(dataclasses.asdict(config),
                                  [CAPTIONS / "vocab.json", CAPTIONS / "train.jsonl",
                                   CAPTIONS / "val.jsonl", EMBEDDINGS, FEATURES])
    model = new_model(config, features.vectors.shape[1])
    progress = run.resumable(run_fingerprint)
    if progress is None:
        progress = Progress(run_fingerprint)
    else:
        print(f"train: resuming after epoch {progress.epochs_done} of an interrupted run")
        run.load_checkpoint(progress, model)
    decoder = Decoder.from_model(model)
    improves = (lambda new, best: new > best) if config.monitor == "val_bleu4" else (
        lambda new, best: new < best)

    with Live(dir=str(LIVE_DIR), dvcyaml=None, save_dvc_exp=False, report=None) as live:
        for logs in progress.history:
            log_epoch(live, logs)
        for epoch in range(progress.epochs_done, config.epochs):
            if progress.epochs_without_improvement >= config.patience:
                break
            reseed_dropout(model, config.seed, epoch)
            model.optimizer.learning_rate.assign(
                config.learning_rate * config.learning_rate_decay ** epoch)
            started = time.perf_counter()
            history = model.fit(
                caption_dataset(train, train_features, config.batch_size,
                                shuffle_seed=epoch_seed(config.seed, epoch)),
                initial_epoch=epoch, epochs=epoch + 1, verbose=0, shuffle=False,
            )
            logs = {"loss": float(history.history["loss"][-1]),
                    "fit_seconds": time.perf_counter() - started,
                    "val_loss": float(model.evaluate(validation_data, verbose=0)),
                    "val_bleu4": validation_bleu(decoder, bleu_features, bleu_references,
                                                 vocabulary, max_length)}
            improved = progress.best is None or improves(logs[config.monitor], progress.best)
            if improved:
                progress.best = logs[config.monitor]
                save_model(model, run.best_model, vocabulary, backbone)
            if config.save_every_epoch:
                save_model(model, run.epochs / f"epoch_{epoch + 1:03d}.keras", vocabulary, backbone)
            progress.record(logs, improved)
            run.save_checkpoint(model, progress)
            log_epoch(live, logs)
            print(f"train: epoch {epoch + 1}: loss {logs['loss']:.4f}, val_loss "
                  f"{logs['val_loss']:.4f}, val_bleu4 {logs['val_bleu4']:.4f}, "
                  f"{logs['fit_seconds']:.1f} s", flush=True)
        live.summary["best_epoch"] = progress.best_epoch
        live.summary[f"best_{config.monitor}"] = progress.best

    fit_seconds = [logs["fit_seconds"] for logs in progress.history]
    write_json(SPEED_FILE, {
        "epoch_seconds": [round(seconds, 2) for seconds in fit_seconds],
        "train_tokens_per_s": round(target_tokens * len(fit_seconds) / sum(fit_seconds), 1),
    })
    run.publish(MODELS)
    print(f"train: best epoch {progress.best_epoch} ({config.monitor} {progress.best:.4f})")


if __name__ == "__main__":
    run_stage(main)
