"""The training data: every caption with its image's features as tf.data batches of similar
length, and the seeding that makes each epoch's order a function of (seed, epoch) alone."""

from __future__ import annotations

import bisect
import collections
import math
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import tensorflow as tf

# Captions are batched with others of similar length, so that little of each batch is padding, and
# padded to their bucket's bound, so that the training step is traced for a few shapes only. Batches
# mix neighbouring lengths on purpose: batches of one length train worse (BENCHMARKS.md).
LENGTH_BUCKETS = [10, 13, 16, 20]
# Batches ready ahead of the training step. The map before batching is a cheap row lookup.
PREFETCH_BATCHES = 4
# Under a tf.distribute strategy, each global batch is split between the replicas and, across
# workers, each takes its own part of every batch (sharding by element, as the data is in memory).
# No autotuning: its thread can hold up the end of an epoch (the iterator's teardown) for tens of
# seconds, the CPU idle meanwhile.
DATASET_OPTIONS = tf.data.Options()
DATASET_OPTIONS.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
DATASET_OPTIONS.autotune.enabled = False


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
    With a seed, the order is shuffled by it (use `epoch_seed` for a new order each epoch).
    """
    rows = [row for row, record in enumerate(records) for _ in record["tokens"]]
    tokens = tf.ragged.constant([ids for record in records for ids in record["tokens"]],
                                dtype=tf.int32)
    image_features = tf.constant(features, tf.float32)
    dataset = tf.data.Dataset.from_tensor_slices((rows, tokens))
    if shuffle_seed is not None:
        dataset = dataset.shuffle(len(rows), seed=shuffle_seed, reshuffle_each_iteration=False)
    dataset = dataset.map(lambda row, ids: ((tf.gather(image_features, row), ids[:-1]), ids[1:]))
    lengths = [len(ids) - 1 for record in records for ids in record["tokens"]]
    boundaries = [bound for bound in LENGTH_BUCKETS if bound <= max(lengths)] + [max(lengths) + 1]
    dataset = dataset.bucket_by_sequence_length(
        element_length_func=lambda inputs, target: tf.shape(target)[0],
        bucket_boundaries=boundaries,
        bucket_batch_sizes=[batch_size] * (len(boundaries) + 1),
        pad_to_bucket_boundary=True,
    )
    # Stated, so Keras knows where an epoch ends instead of warning that the data "ran out".
    per_bucket = collections.Counter(bisect.bisect_right(boundaries, length) for length in lengths)
    batches = sum(math.ceil(count / batch_size) for count in per_bucket.values())
    return (dataset.apply(tf.data.experimental.assert_cardinality(batches))
            .prefetch(PREFETCH_BATCHES).with_options(DATASET_OPTIONS))


def epoch_seed(seed: int, epoch: int) -> int:
    """A 32-bit seed for one epoch's randomness, derived from the run's seed and the epoch alone."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])


@dataclass(frozen=True)
class TrainingData:
    """Tokenized records of the train and validation splits with one feature row per record, and
    how many validation images (the first ones) are captioned each epoch for validation BLEU-4."""

    train: list[dict[str, Any]]
    train_features: np.ndarray
    validation: list[dict[str, Any]]
    validation_features: np.ndarray
    vocabulary: list[str]
    bleu_images: int

    @property
    def max_length(self) -> int:
        return max(len(ids) for record in self.train for ids in record["tokens"])

    @property
    def target_tokens(self) -> int:
        """Words the model predicts in one epoch (each caption's tokens after the start token)."""
        return sum(len(ids) - 1 for record in self.train for ids in record["tokens"])
