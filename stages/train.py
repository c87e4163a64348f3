"""Stage train: fits the merge captioner with teacher forcing, logging every epoch with DVCLive."""

from __future__ import annotations

import shutil
from pathlib import Path

import keras
from dvclive import Live
from dvclive.keras import DVCLiveCallback

from captioner import params
from captioner.artifacts import (
    EMBEDDINGS,
    FEATURES,
    MODELS,
    load_features,
    load_split,
    save_model,
)
from captioner.errors import run_stage
from captioner.files import read_json, read_npy
from captioner.model import build_captioner
from captioner.text import PAD_ID
from captioner.training import (
    EpochTimer,
    SaveEachEpoch,
    ValidationBleu,
    caption_dataset,
    seed_everything,
)

LIVE_DIR = Path("metrics/train")
OPTIMIZERS = {"adam": keras.optimizers.Adam, "rmsprop": keras.optimizers.RMSprop,
              "sgd": keras.optimizers.SGD}


def main() -> None:
    config = params.load(params.TrainParams)
    seed_everything(config.seed)
    vocabulary = read_json(Path("data/captions/vocab.json"))
    backbone = read_json(FEATURES / "backbone.json")
    features = load_features()
    train, validation = load_split("train"), load_split("val")
    bleu_images = validation[:config.val_bleu_images]
    max_length = max(len(ids) for record in train for ids in record["tokens"])

    model = build_captioner(read_npy(EMBEDDINGS), features.vectors.shape[1], config.units,
                            config.rnn, config.dropout, config.train_embedding)
    model.compile(
        optimizer=OPTIMIZERS[config.optimizer](learning_rate=config.learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(ignore_class=PAD_ID),
    )

    epochs_dir = MODELS / "epochs"
    shutil.rmtree(MODELS, ignore_errors=True)

    def save_epoch(trained: keras.Model, epoch: int) -> None:
        save_model(trained, epochs_dir / f"epoch_{epoch:03d}.keras", vocabulary, backbone)

    def save_best(trained: keras.Model, epoch: int) -> None:
        save_model(trained, MODELS / "model.keras", vocabulary, backbone)

    keeper = SaveEachEpoch(config.monitor, save_epoch if config.save_every_epoch else None,
                           save_best)
    with Live(dir=str(LIVE_DIR), dvcyaml=None, save_dvc_exp=False, report=None) as live:
        model.fit(
            caption_dataset(train, features.of([r["image"] for r in train]), config.batch_size,
                            shuffle_seed=config.seed),
            validation_data=caption_dataset(
                validation, features.of([r["image"] for r in validation]), config.batch_size),
            epochs=config.epochs,
            verbose=2,
            shuffle=False,  # the dataset shuffles itself, reproducibly
            callbacks=[
                EpochTimer(),
                ValidationBleu(features.of([r["image"] for r in bleu_images]),
                               {r["image"]: r["captions"] for r in bleu_images}, vocabulary,
                               max_length),
                keeper,
                keras.callbacks.EarlyStopping(config.monitor, patience=config.patience,
                                              mode="max" if config.monitor == "val_bleu4"
                                              else "min"),
                DVCLiveCallback(live=live),
            ],
        )
        live.summary["best_epoch"] = keeper.best_epoch
        live.summary[f"best_{config.monitor}"] = float(keeper.best)
    print(f"train: best epoch {keeper.best_epoch} ({config.monitor} {keeper.best:.4f})")


if __name__ == "__main__":
    run_stage(main)
