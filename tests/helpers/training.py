"""Tiny training inputs a model learns in seconds: three images' features and one-word captions,
as records in memory or as the train stage's input files in a project folder."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import keras
import numpy as np

from captioner.core import params, paths
from captioner.core.files import write_json, write_jsonl, write_npy
from captioner.core.phases import CROSS_ENTROPY
from captioner.core.text import END_ID, START_ID
from captioner.training.data import seed_everything
from captioner.training.loop import compiled_captioner
from tests.helpers.project import ROOT, set_params

VOCABULARY = ["<pad>", "<unk>", "<start>", "<end>", "a", "b", "c", "d"]
WORDS = "abcd"
EPOCHS = 3
# Dropout masks are drawn per replica under tf.distribute, so they differ from a single device's;
# a negligible rate (0 has no random state to seed) keeps runs comparable across strategies.
DROPOUT = 1e-6


def records(count: int, shift: int) -> tuple[list[dict], np.ndarray]:
    """Image i has feature one-hot(i % 3) and captions of word 4 + (i + shift) % 3."""
    result, features = [], []
    for i in range(count):
        word = 4 + (i + shift) % 3
        result.append({"image": f"{shift}_{i}.jpg", "captions": [f"{WORDS[word - 4]} {WORDS[word - 4]}"],
                       "tokens": [[START_ID, word, word, END_ID], [START_ID, word, END_ID]]})
        features.append(np.eye(3, dtype=np.float32)[i % 3])
    return result, np.stack(features)


def tiny_config(**changes: object) -> params.TrainParams:
    """The default train params, made small enough for `records` (and changed by `changes`)."""
    defaults = params.load(params.TrainParams, ROOT / "params.yaml")
    return dataclasses.replace(defaults, **{"units": 16, "batch_size": 8, "learning_rate": 0.02,
                                            "dropout": 0.1, "epochs": 8, "seed": 0,
                                            "self_critical_epochs": 0,
                                            "self_critical_batch_images": 8, **changes})


def tiny_model(settings: params.TrainParams, phase: str = CROSS_ENTROPY) -> keras.Model:
    """A new captioner for `records`' three-long features, compiled for `phase`."""
    seed_everything(settings.seed)
    embedding = np.random.default_rng(0).normal(size=(len(VOCABULARY), 4)).astype(np.float32)
    return compiled_captioner(settings, embedding, feature_shape=(3,), phase=phase)


def add_regions(folder: Path) -> None:
    """Gives the project's images regions, as extract_features.grid does: two per image, whose
    mean is its pooled vector."""
    pooled = np.load(folder / paths.FEATURES / "features.npy").astype(np.float32)
    offset = np.random.default_rng(1).normal(size=pooled.shape).astype(np.float32) * 0.1
    np.save(folder / paths.FEATURES / "grid.npy",
            np.stack([pooled + offset, pooled - offset], axis=1).astype(np.float16))


def train_project(folder: Path, distribute_mode: str, self_critical_epochs: int = 0) -> Path:
    """The train stage's inputs for the tiny captions of `records`, and its params: `EPOCHS`
    epochs of cross-entropy, then `self_critical_epochs`, one model, `train.distribute` set to
    `distribute_mode`."""
    train, train_features = records(24, shift=0)
    val, val_features = records(6, shift=1)
    images = [record["image"] for record in train + val]
    write_jsonl(folder / paths.split_file("train"), train)
    write_jsonl(folder / paths.split_file("val"), val)
    write_json(folder / paths.VOCABULARY, VOCABULARY)
    write_npy(folder / paths.EMBEDDINGS,
              np.random.default_rng(0).normal(size=(len(VOCABULARY), 4)).astype(np.float32))
    write_npy(folder / paths.FEATURES / "features.npy",
              np.concatenate([train_features, val_features]).astype(np.float16))
    write_json(folder / paths.FEATURES / "images.json", images)
    write_json(folder / paths.FEATURES / "backbone.json",
               {"backbone": "efficientnet_lite0", "weights": "imagenet", "dim": 3, "batch_size": 1})
    (folder / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    set_params(folder, {"train": {"units": 16, "batch_size": 8, "learning_rate": 0.02,
                                  "dropout": DROPOUT, "epochs": EPOCHS, "patience": EPOCHS,
                                  "val_bleu_images": 6, "seed": 0,
                                  "self_critical_epochs": self_critical_epochs,
                                  "self_critical_learning_rate": 0.01, "ensemble": 1,
                                  "distribute": distribute_mode}})
    return folder
