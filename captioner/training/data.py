"""The training data: every caption with its image's features as tf.data batches of similar
length, and the seeding that makes each epoch's order a function of (seed, epoch) alone."""

from __future__ import annotations

import bisect
import collections
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from captioner.model.splits import Regions

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


# What a caption says of the mirrored photo: these words swapped. ("left" as in "has left" is
# swapped too; it is rare in captions of photos.)
MIRRORED_WORDS = {"left": "right", "right": "left"}


@dataclass(frozen=True)
class MirroredView:
    """The training images mirrored left to right: one row per record, as the photos' rows, and
    the word ids their captions use (MIRRORED_WORDS swapped)."""

    features: np.ndarray | Regions
    word_ids: np.ndarray

    @classmethod
    def of(cls, features: np.ndarray | Regions, vocabulary: list[str]) -> MirroredView:
        index = {word: number for number, word in enumerate(vocabulary)}
        word_ids = np.arange(len(vocabulary), dtype=np.int32)
        for word, mirrored in MIRRORED_WORDS.items():
            if word in index and mirrored in index:
                word_ids[index[word]] = index[mirrored]
        return cls(features, word_ids)


def _image_lookup(features: np.ndarray | Regions,
                  mirrored: np.ndarray | Regions | None) -> Callable[[tf.Tensor], tf.Tensor]:
    """A record's image input from its row (rows past the records' count are the mirrored
    view's): gathered from the pooled vectors, held in memory, or read from the memory-mapped
    regions only when the element is made (after shuffling)."""
    if isinstance(features, np.ndarray):
        image_features = tf.constant(features if mirrored is None
                                     else np.concatenate([features, mirrored]), tf.float32)
        return lambda row: tf.gather(image_features, row)
    views = [features] if mirrored is None else [features, mirrored]

    def read(row: tf.Tensor) -> tf.Tensor:
        image = tf.numpy_function(lambda index: views[index // len(features)][index % len(features)],
                                  [row], tf.float32, stateful=False)
        image.set_shape(features.shape[1:])
        return image

    return read


def caption_dataset(
    records: list[dict[str, Any]],
    features: np.ndarray | Regions,
    batch_size: int,
    shuffle_seed: int | None = None,
    mirrored: MirroredView | None = None,
) -> tf.data.Dataset:
    """((image features, caption without its last token), caption without its start token).

    One element per caption: every caption of every image. `features` holds one row per record
    (pooled vectors or regions). With a seed, the order is shuffled by it (use `epoch_seed` for a
    new order each epoch), and with a `mirrored` view each image is seen, with all its captions,
    as it is or mirrored, as drawn from the seed.
    """
    flipped = (np.random.default_rng(shuffle_seed).integers(0, 2, len(records)).astype(bool)
               if mirrored is not None and shuffle_seed is not None else np.zeros(len(records), bool))
    rows = [row + len(records) * flip for row, (record, flip) in enumerate(zip(records, flipped,
                                                                                 strict=True))
            for _ in record["tokens"]]
    tokens = tf.ragged.constant([mirrored.word_ids[ids].tolist() if flip else ids
                                 for record, flip in zip(records, flipped, strict=True)
                                 for ids in record["tokens"]], dtype=tf.int32)
    image_of = _image_lookup(features, None if mirrored is None else mirrored.features)
    dataset = tf.data.Dataset.from_tensor_slices((rows, tokens))
    if shuffle_seed is not None:
        dataset = dataset.shuffle(len(rows), seed=shuffle_seed, reshuffle_each_iteration=False)
    dataset = dataset.map(lambda row, ids: ((image_of(row), ids[:-1]), ids[1:]))
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
    """Tokenized records of the train and validation splits with one feature row per record (pooled
    vectors or regions), how many validation images (the first ones) are captioned each epoch for
    validation BLEU-4, and the training images' mirrored view when cross-entropy epochs draw one."""

    train: list[dict[str, Any]]
    train_features: np.ndarray | Regions
    validation: list[dict[str, Any]]
    validation_features: np.ndarray | Regions
    vocabulary: list[str]
    bleu_images: int
    train_mirrored: MirroredView | None = None

    @property
    def max_length(self) -> int:
        return max(len(ids) for record in self.train for ids in record["tokens"])

    @property
    def target_tokens(self) -> int:
        """Words the model predicts in one epoch (each caption's tokens after the start token)."""
        return sum(len(ids) - 1 for record in self.train for ids in record["tokens"])
