"""Training machinery: seeding, the tf.data caption pipeline and the per-epoch callbacks."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from captioner.decoding import Decoder
from captioner.scoring import bleu4
from captioner.text import decode

# Captions are batched with others of similar length so that little of each batch is padding.
LENGTH_BUCKETS = [10, 13, 16, 20]


def seed_everything(seed: int) -> None:
    """Seeds Python, NumPy and TensorFlow and makes TensorFlow's ops deterministic."""
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def caption_dataset(
    records: list[dict[str, Any]],
    features: np.ndarray,
    batch_size: int,
    shuffle_seed: int | None = None,
) -> tf.data.Dataset:
    """((image features, caption without its last token), caption without its start token).

    One element per caption: every caption of every image. `features` holds one row per record.
    With a seed, the order is shuffled again each epoch, the same way on every run.
    """
    rows = [row for row, record in enumerate(records) for _ in record["tokens"]]
    tokens = tf.ragged.constant([ids for record in records for ids in record["tokens"]],
                                dtype=tf.int32)
    image_features = tf.constant(features, tf.float32)
    dataset = tf.data.Dataset.from_tensor_slices((rows, tokens))
    if shuffle_seed is not None:
        dataset = dataset.shuffle(len(rows), seed=shuffle_seed, reshuffle_each_iteration=True)
    dataset = dataset.map(
        lambda row, ids: ((tf.gather(image_features, row), ids[:-1]), ids[1:]),
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True,
    )
    dataset = dataset.bucket_by_sequence_length(
        element_length_func=lambda inputs, target: tf.shape(target)[0],
        bucket_boundaries=LENGTH_BUCKETS,
        bucket_batch_sizes=[batch_size] * (len(LENGTH_BUCKETS) + 1),
    )
    return dataset.prefetch(tf.data.AUTOTUNE)


class ValidationBleu(keras.callbacks.Callback):
    """Adds `val_bleu4` (greedy decoding of validation images) to each epoch's logs."""

    def __init__(self, features: np.ndarray, references: dict[str, list[str]],
                 vocabulary: list[str], max_length: int) -> None:
        super().__init__()
        self.features, self.references = features, references
        self.vocabulary, self.max_length = vocabulary, max_length
        self.decoder: Decoder | None = None

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.decoder = Decoder.from_model(self.model)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        captions = self.decoder.captions(self.features, beam_size=1, max_length=self.max_length,
                                         batch_size=256)
        hypotheses = {image: decode(ids, self.vocabulary)
                      for image, ids in zip(self.references, captions, strict=True)}
        logs["val_bleu4"] = bleu4(hypotheses, self.references)


class EpochTimer(keras.callbacks.Callback):
    """Adds the epoch's wall time in seconds to its logs."""

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs["epoch_seconds"] = time.perf_counter() - self.started


class SaveEachEpoch(keras.callbacks.Callback):
    """Calls `save(model, epoch)` after every epoch, and `save_best` when the monitor improves."""

    def __init__(self, monitor: str, save: Callable[[keras.Model, int], None] | None,
                 save_best: Callable[[keras.Model, int], None]) -> None:
        super().__init__()
        self.monitor, self.save, self.save_best = monitor, save, save_best
        self.better = np.greater if monitor.endswith("bleu4") else np.less
        self.best: float | None = None
        self.best_epoch = 0

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if self.save is not None:
            self.save(self.model, epoch + 1)
        value = logs[self.monitor]
        if self.best is None or self.better(value, self.best):
            self.best, self.best_epoch = value, epoch + 1
            self.save_best(self.model, epoch + 1)
