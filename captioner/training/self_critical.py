"""Self-critical sequence training (Rennie et al. 2017): after cross-entropy, the captioner samples
captions, each is rewarded by its CIDEr-D against the image's references, and the policy gradient
raises the log-probability of captions that beat the mean reward of the image's other samples
(the baseline of Luo 2020, which needs no greedy decoding).

Sampling draws from NumPy generators seeded by (seed, epoch), and the gradient step uses no
dropout, so an epoch depends on its starting weights and its seed alone: a resumed run continues
exactly as the uninterrupted one.

Under a tf.distribute strategy (train.distribute mirrored or multi_worker) every process samples
the whole batch alike (same weights, same seed); each replica then takes the gradient of its own
images' samples, and the optimizer sums the replicas' gradients.
"""

from __future__ import annotations

import time
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from captioner.core.text import END_ID, PAD_ID, START_ID, decode
from captioner.model.decoding import compiled, sample_captions
from captioner.model.network import decoding_models
from captioner.model.scoring import CiderD


def advantages(rewards: np.ndarray) -> np.ndarray:
    """Each sample's reward minus the mean reward of its image's other samples; rewards are
    (images, samples)."""
    samples = rewards.shape[1]
    baseline = (rewards.sum(axis=1, keepdims=True) - rewards) / (samples - 1)
    return (rewards - baseline).reshape(-1)


class SelfCriticalTrainer:
    """Runs self-critical epochs on a compiled captioner, with the model's own optimizer, under
    the strategy of the scope it is made in."""

    def __init__(self, model: keras.Model, train_records: list[dict[str, Any]],
                 vocabulary: list[str], samples: int, batch_images: int, max_words: int) -> None:
        self.model, self.vocabulary = model, vocabulary
        self.samples, self.batch_images, self.max_words = samples, batch_images, max_words
        self.reward = CiderD([record["captions"] for record in train_records])
        parts = decoding_models(model)
        self._encode, self._step = compiled(parts.encode_image), compiled(parts.step)
        self._strategy = tf.distribute.get_strategy()
        if not model.optimizer.built:  # built while a replica step is traced, it would fail
            model.optimizer.build(model.trainable_variables)
        self._apply = tf.function(
            lambda *parts: self._strategy.run(self._gradient_step, args=parts),
            reduce_retracing=True)

    def _gradient_step(self, features: tf.Tensor, previous: tf.Tensor, words: tf.Tensor,
                       advantage: tf.Tensor, batch_words: tf.Tensor) -> None:
        """One replica's part of the step: its loss is its samples' share of the batch's, so the
        replicas' gradients sum to the batch's."""
        with tf.GradientTape() as tape:
            probabilities = self.model([features, previous], training=False)
            chosen = tf.gather(tf.cast(probabilities, tf.float32), words, batch_dims=2)
            mask = tf.cast(words != PAD_ID, tf.float32)
            loss = -tf.reduce_sum(tf.math.log(tf.maximum(chosen, 1e-30)) * mask * advantage[:, None])
            loss /= batch_words
        variables = self.model.trainable_variables
        self.model.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables, strict=True))

    def _replica_parts(self, arrays: list[np.ndarray], images: int) -> list[Any]:
        """Each array's rows split between the replicas by image: all of an image's samples go
        to one replica."""
        def rows(context: tf.distribute.InputContext, array: np.ndarray) -> tf.Tensor:
            mine = np.array_split(np.arange(images), context.num_replicas_in_sync)[
                context.replica_id_in_sync_group]
            start = int(mine[0]) * self.samples if len(mine) else 0
            return tf.constant(array[start:start + len(mine) * self.samples])

        return [self._strategy.experimental_distribute_values_from_function(
            lambda context, array=array: rows(context, array)) for array in arrays]

    def epoch(self, features: np.ndarray, seed: int) -> dict[str, float]:
        """One pass over the training images in an order drawn from `seed`: the mean reward of the
        samples and the seconds it took."""
        started = time.perf_counter()
        rng = np.random.default_rng(seed)
        order = rng.permutation(len(features))
        rewards_seen = []
        for first in range(0, len(order), self.batch_images):
            images = order[first:first + self.batch_images]
            batch = features[images].astype(np.float32)
            words = sample_captions(self._encode, self._step, batch, self.samples, self.max_words, rng)
            rewards = np.array([self.reward.score(decode(row, self.vocabulary),
                                                  images[index // self.samples])
                                for index, row in enumerate(words)], np.float32)
            rewards_seen.append(rewards.mean())
            advantage = advantages(rewards.reshape(len(images), self.samples))
            previous = np.concatenate([np.full((len(words), 1), START_ID, np.int32), words[:, :-1]], 1)
            previous[previous == END_ID] = PAD_ID
            length = int((words != PAD_ID).sum(axis=1).max())
            self._apply(*self._replica_parts(
                [np.repeat(batch, self.samples, axis=0), previous[:, :length], words[:, :length],
                 advantage], len(images)),
                tf.constant(float((words != PAD_ID).sum()), tf.float32))
        return {"reward": float(np.mean(rewards_seen)), "fit_seconds": time.perf_counter() - started}
