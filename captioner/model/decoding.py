"""Caption generation: beam search batched across images (beam size 1 is greedy decoding), and the
sampling that self-critical training draws its captions with.

The search is TensorFlow ops in one graph, so the same function decodes for evaluate and predict
and inside the exported SavedModel (captioner/inference/export.py). `Decoder` runs it over feature
arrays with one DecodingSettings value: best captions as ids or words, every beam, or the captions
with decoding's speed (as evaluate and benchmarks/speeds.py measure it).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import keras
import numpy as np
import tensorflow as tf
from tqdm import tqdm

from captioner.core.params import DECODE_BATCH_SIZE, DecodingSettings
from captioner.core.text import END_ID, PAD_ID, START_ID, UNK_ID, decode
from captioner.model.network import decoding_models

# Never generated: padding and the start token are not words, the unknown word says nothing.
BANNED_IDS = (PAD_ID, START_ID, UNK_ID)


def compiled(model: keras.Model) -> Callable:
    """The model as a graph function taking and returning tensors."""
    def call(*inputs: tf.Tensor) -> tf.Tensor | list[tf.Tensor]:
        return model(inputs[0] if len(inputs) == 1 else list(inputs), training=False)

    return tf.function(call, reduce_retracing=True)


def beam_search(encode: Callable, step: Callable, features: tf.Tensor, beam_size: tf.Tensor,
                max_length: tf.Tensor, length_penalty: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Every image's beams, best first: word ids (images, beam_size, max_length), padded with
    PAD_ID and holding END_ID where a caption ended, and their ranking scores (images, beam_size).

    `encode(features)` gives the projected images and the initial states; `step(projected,
    previous_words, *states)` gives next-word probabilities (batch, 1, vocab) and the new states.
    A beam is ranked by total log-probability divided by length ** length_penalty (its words and
    end token; 0 ranks by plain log-probability). A beam stops at the end token; at most
    `max_length` words are generated.
    """
    images = tf.shape(features)[0]
    projected, *states = (tf.repeat(encoded, beam_size, axis=0) for encoded in encode(features))
    words = tf.fill([images, beam_size, max_length], PAD_ID)
    # Every beam starts identical, so only the first one may expand.
    scores = tf.where(tf.range(beam_size)[None, :] == 0, 0.0, tf.fill([images, beam_size], -np.inf))
    finished = tf.zeros([images, beam_size], tf.bool)
    previous = tf.fill([images * beam_size, 1], START_ID)

    for position in tf.range(max_length):
        tf.autograph.experimental.set_loop_options(shape_invariants=[
            (scores, tf.TensorShape([None, None])), (finished, tf.TensorShape([None, None])),
            (words, tf.TensorShape([None, None, None]))])
        if tf.reduce_all(finished):
            break
        probabilities, *states = step(projected, previous, *states)
        log_probs = tf.math.log(tf.maximum(probabilities[:, 0], 1e-30))
        vocab_size = tf.shape(log_probs)[-1]
        log_probs = tf.reshape(log_probs, [images, beam_size, vocab_size])
        vocabulary = tf.range(vocab_size)
        banned = tf.reduce_any(vocabulary[:, None] == tf.constant(BANNED_IDS)[None, :], axis=1)
        log_probs = tf.where(banned, -np.inf, log_probs)
        # A finished beam carries on unchanged, padded.
        padding_only = tf.where(vocabulary == PAD_ID, 0.0, -np.inf)
        log_probs = tf.where(finished[..., None], padding_only, log_probs)
        candidates = tf.reshape(scores[..., None] + log_probs, [images, -1])
        scores, chosen = tf.math.top_k(candidates, k=beam_size)
        parent, word = chosen // vocab_size, chosen % vocab_size

        at_position = tf.one_hot(position, max_length, dtype=tf.int32)
        words = tf.gather(words, parent, batch_dims=1) * (1 - at_position) + word[..., None] * at_position
        finished = tf.gather(finished, parent, batch_dims=1) | (word == END_ID)
        source_rows = tf.reshape(tf.range(images)[:, None] * beam_size + parent, [-1])
        states = [tf.gather(state, source_rows) for state in states]
        previous = tf.reshape(word, [-1, 1])

    lengths = tf.maximum(tf.reduce_sum(tf.cast(words != PAD_ID, tf.float32), axis=2), 1.0)
    ranking = scores / lengths ** length_penalty
    order = tf.argsort(ranking, axis=1, direction="DESCENDING", stable=True)
    return tf.gather(words, order, batch_dims=1), tf.gather(ranking, order, batch_dims=1)


def sample_captions(encode: Callable, step: Callable, features: np.ndarray, samples: int,
                    max_words: int, rng: np.random.Generator) -> np.ndarray:
    """`samples` captions drawn for each image, (images * samples, max_words) word ids: each one's
    words, then the end token if it ended, then padding; BANNED_IDS are never drawn.

    Self-critical training's sampler: it draws with NumPy, so the draws depend on `rng` alone.
    """
    rows = len(features) * samples
    projected, *states = (np.repeat(np.asarray(encoded), samples, axis=0)
                          for encoded in encode(features))
    words = np.full((rows, max_words), PAD_ID, np.int32)
    ended = np.zeros(rows, bool)
    previous = np.full((rows, 1), START_ID, np.int32)
    for position in range(max_words):
        probabilities, *states = step(projected, previous, *states)
        probabilities = np.asarray(probabilities, np.float64)[:, 0]
        probabilities[:, list(BANNED_IDS)] = 0.0
        cumulative = probabilities.cumsum(axis=1)
        drawn = (cumulative < rng.random((rows, 1)) * cumulative[:, -1:]).sum(axis=1)
        drawn = np.where(ended, PAD_ID, np.minimum(drawn, cumulative.shape[1] - 1)).astype(np.int32)
        words[:, position] = drawn
        ended |= drawn == END_ID
        previous = drawn[:, None]
        states = [np.asarray(state) for state in states]
        if ended.all():
            break
    return words


def caption_words(ids: np.ndarray) -> list[int]:
    """A beam's word ids without its end token and padding."""
    return [int(word) for word in ids if word not in (PAD_ID, END_ID)]


@dataclass(frozen=True)
class Beam:
    """One hypothesis of a beam search: its word ids and its ranking score."""

    ids: list[int]
    score: float


class Decoder:
    """Generates captions from an image encoder and a one-word step function (see beam_search)."""

    def __init__(self, encode: Callable, step: Callable) -> None:
        def search(features: tf.Tensor, beam_size: tf.Tensor, max_length: tf.Tensor,
                   length_penalty: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            return beam_search(encode, step, features, beam_size, max_length, length_penalty)

        self._search = tf.function(search, reduce_retracing=True)

    @classmethod
    def from_model(cls, model: keras.Model) -> Decoder:
        """A decoder for a trained captioner; its graph function is traced once per batch shape."""
        models = decoding_models(model)
        return cls(compiled(models.encode_image), compiled(models.step))

    def beams(self, features: np.ndarray, settings: DecodingSettings, batch_size: int = DECODE_BATCH_SIZE,
              progress: bool = False) -> list[list[Beam]]:
        """Every image's `settings.beam_size` hypotheses, best first (see beam_search)."""
        results: list[list[Beam]] = []
        with tqdm(total=len(features), unit="img", desc="decoding", disable=not progress) as bar:
            for start in range(0, len(features), batch_size):
                batch = features[start:start + batch_size].astype(np.float32)
                words, scores = self._search(tf.constant(batch), tf.constant(settings.beam_size),
                                             tf.constant(settings.max_length),
                                             tf.constant(settings.length_penalty, tf.float32))
                results.extend([Beam(caption_words(ids), float(score))
                                for ids, score in zip(image_words, image_scores, strict=True)]
                               for image_words, image_scores in zip(words.numpy(), scores.numpy(),
                                                                    strict=True))
                bar.update(len(batch))
        return results

    def caption_ids(self, features: np.ndarray, settings: DecodingSettings,
                    batch_size: int = DECODE_BATCH_SIZE, progress: bool = False) -> list[list[int]]:
        """Word ids of the best caption for each image, without start, end, unknown or padding tokens."""
        return [image_beams[0].ids
                for image_beams in self.beams(features, settings, batch_size, progress)]

    def captions(self, features: np.ndarray, settings: DecodingSettings, vocabulary: list[str],
                 batch_size: int = DECODE_BATCH_SIZE, progress: bool = False) -> list[str]:
        """The best caption of each image, in words."""
        return [decode(ids, vocabulary)
                for ids in self.caption_ids(features, settings, batch_size, progress)]

    def timed_captions(self, features: np.ndarray, settings: DecodingSettings,
                       vocabulary: list[str], batch_size: int = DECODE_BATCH_SIZE,
                       progress: bool = False) -> tuple[list[str], float]:
        """The best caption of each image and decoding's speed in images per second.

        One short batch first traces the graph functions, so the speed measured is decoding's,
        not tracing's.
        """
        self.caption_ids(features[:batch_size], replace(settings, max_length=2), batch_size)
        started = time.perf_counter()
        ids = self.caption_ids(features, settings, batch_size, progress)
        images_per_s = len(features) / (time.perf_counter() - started)
        return [decode(caption, vocabulary) for caption in ids], images_per_s
