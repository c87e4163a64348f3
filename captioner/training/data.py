"""The training data: every caption with its image's features as tf.data batches of similar
length, and the seeding that makes each epoch's order a function of (seed, epoch) alone."""

from __future__ import annotations

import bisect
import collections
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from captioner.core.text import PAD_ID
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


def _views(records: list[dict[str, Any]], shuffle_seed: int | None,
           mirrored: MirroredView | None) -> tuple[np.ndarray, list[list[list[int]]]]:
    """Whether each image is seen mirrored (drawn from the seed; never without a view or a seed),
    and each image's captions as seen, "left" and "right" swapped in a mirrored one."""
    flipped = (np.random.default_rng(shuffle_seed).integers(0, 2, len(records)).astype(bool)
               if mirrored is not None and shuffle_seed is not None else np.zeros(len(records), bool))
    captions = [[mirrored.word_ids[ids].tolist() for ids in record["tokens"]] if flip
                else record["tokens"] for record, flip in zip(records, flipped, strict=True)]
    return flipped, captions


def caption_dataset(
    records: list[dict[str, Any]],
    features: np.ndarray | Regions,
    batch_size: int,
    shuffle_seed: int | None = None,
    mirrored: MirroredView | None = None,
) -> tf.data.Dataset:
    """((image features, caption without its last token), caption without its start token), in
    batches of about `batch_size` captions of similar length.

    `features` holds one row per record. Pooled vectors (an array) give one element per caption:
    every caption of every image, shuffled. Regions give image_batches: each image once, its
    regions once, its captions after it. With a seed, the order is shuffled by it (use
    `epoch_seed` for a new order each epoch), and with a `mirrored` view each image is seen, with
    all its captions, as it is or mirrored, as drawn from the seed.
    """
    if isinstance(features, Regions):
        return image_batches(records, features, batch_size, shuffle_seed, mirrored)
    flipped, captions = _views(records, shuffle_seed, mirrored)
    rows = [row + len(records) * flip for row, (flip, image_captions) in
            enumerate(zip(flipped, captions, strict=True)) for _ in image_captions]
    tokens = tf.ragged.constant([ids for image_captions in captions for ids in image_captions],
                                dtype=tf.int32)
    image_features = tf.constant(features if mirrored is None
                                 else np.concatenate([features, mirrored.features]), tf.float32)
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


def captions_per_image(records: list[dict[str, Any]]) -> int:
    """The captions each image contributes to an image batch: the most common count."""
    return collections.Counter(len(record["tokens"]) for record in records).most_common(1)[0][0]


def image_batches(records: list[dict[str, Any]], regions: Regions, batch_size: int,
                  shuffle_seed: int | None = None,
                  mirrored: MirroredView | None = None) -> tf.data.Dataset:
    """caption_dataset's batches for a captioner that reads regions, which it projects once per
    image: ((regions (images, R, D), captions (images * k, T)), targets (images * k, T)), each
    image's k captions consecutive (k = captions_per_image; an image with more gives k of them,
    one with fewer repeats some, drawn from the seed, or the first ones cycled without it).

    Images are batched with others whose longest caption falls in the same LENGTH_BUCKETS span,
    batch_size // k of them (a multiple of the replicas under tf.distribute, so that splitting
    the regions and the captions between them keeps them together; then an epoch's last few images
    that do not fill a multiple are left out). The regions are read from the memory-mapped grid
    as each batch is made.
    """
    k = captions_per_image(records)
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    per_batch = max(replicas, batch_size // k // replicas * replicas)
    rng = np.random.default_rng(shuffle_seed) if shuffle_seed is not None else None
    flipped, captions = _views(records, shuffle_seed, mirrored)
    chosen = [image_captions if len(image_captions) == k
              else [image_captions[index % len(image_captions)] for index in range(k)] if rng is None
              else [image_captions[index] for index in
                    rng.choice(len(image_captions), k, replace=len(image_captions) < k)]
              for image_captions in captions]
    longest = max(len(ids) - 1 for image_captions in chosen for ids in image_captions)
    boundaries = [bound for bound in LENGTH_BUCKETS if bound <= longest] + [longest + 1]
    order = rng.permutation(len(records)) if rng is not None else np.arange(len(records))
    filling: dict[int, list[int]] = collections.defaultdict(list)
    batches: list[list[int]] = []
    for image in order:
        bucket = bisect.bisect_right(boundaries, max(len(ids) - 1 for ids in chosen[image]))
        filling[bucket].append(int(image))
        if len(filling[bucket]) == per_batch:
            batches.append(filling.pop(bucket))
    batches += [images[:len(images) // replicas * replicas] for images in filling.values()]
    batches = [images for images in batches if images]

    def batch_arrays() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for images in batches:
            bucket = bisect.bisect_right(boundaries, max(len(ids) - 1 for image in images
                                                         for ids in chosen[image]))
            tokens = np.full((len(images) * k, boundaries[bucket]), PAD_ID, np.int32)
            for row, ids in enumerate(ids for image in images for ids in chosen[image]):
                tokens[row, :len(ids)] = ids
            yield np.array(images) + len(records) * flipped[images], tokens

    views = [regions] if mirrored is None else [regions, mirrored.features]

    def read(rows: np.ndarray) -> np.ndarray:
        return np.stack([views[row // len(records)][row % len(records)] for row in rows])

    def with_regions(rows: tf.Tensor, tokens: tf.Tensor) -> tuple[tuple[tf.Tensor, tf.Tensor], tf.Tensor]:
        images = tf.numpy_function(read, [rows], tf.float32, stateful=False)
        images.set_shape([None, *regions.shape[1:]])
        return (images, tokens[:, :-1]), tokens[:, 1:]

    dataset = tf.data.Dataset.from_generator(batch_arrays, output_signature=(
        tf.TensorSpec([None], tf.int64), tf.TensorSpec([None, None], tf.int32)))
    return (dataset.map(with_regions)
            .apply(tf.data.experimental.assert_cardinality(len(batches)))
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
