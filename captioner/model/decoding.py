"""Caption generation: beam search batched across images (beam size 1 is greedy decoding)."""

from __future__ import annotations

from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf
from tqdm import tqdm

from captioner.core.text import END_ID, PAD_ID, START_ID, UNK_ID
from captioner.model.network import decoding_models


def compiled(model: keras.Model) -> Callable:
    """The model as a graph function taking and returning tensors."""
    def call(*inputs: tf.Tensor) -> tf.Tensor | list[tf.Tensor]:
        return model(inputs[0] if len(inputs) == 1 else list(inputs), training=False)

    return tf.function(call, reduce_retracing=True)


class Decoder:
    """Generates captions from an image encoder and a one-word step function.

    `encode(features)` gives the projected images and the initial states;
    `step(projected, previous_words, *states)` gives next-word probabilities (batch, 1, vocab)
    and the new states.
    """

    def __init__(self, encode: Callable, step: Callable) -> None:
        self._encode, self._step = encode, step

    @classmethod
    def from_model(cls, model: keras.Model) -> Decoder:
        """A decoder for a trained captioner; its graph functions are traced once."""
        models = decoding_models(model)
        return cls(compiled(models.encode_image), compiled(models.step))

    def caption_ids(
        self,
        features: np.ndarray,
        beam_size: int,
        max_length: int,
        length_penalty: float = 0.0,
        batch_size: int = 64,
        progress: bool = False,
    ) -> list[list[int]]:
        """Word ids of the best caption for each image, without start, end, unknown or padding tokens.

        Hypotheses are ranked by total log-probability divided by length ** length_penalty
        (0 ranks by plain log-probability). A beam stops at the end token; at most `max_length`
        words are generated.
        """
        captions: list[list[int]] = []
        with tqdm(total=len(features), unit="img", desc="decoding", disable=not progress) as bar:
            for start in range(0, len(features), batch_size):
                batch = features[start:start + batch_size].astype(np.float32)
                captions.extend(self._search_batch(batch, beam_size, max_length, length_penalty))
                bar.update(len(batch))
        return captions

    def _search_batch(
        self, features: np.ndarray, beam_size: int, max_length: int, length_penalty: float
    ) -> list[list[int]]:
        images = len(features)
        rows = images * beam_size
        projected, *states = (np.repeat(np.asarray(encoded), beam_size, axis=0)
                              for encoded in self._encode(features))
        words = np.zeros((images, beam_size, 0), np.int64)
        scores = np.full((images, beam_size), -np.inf, np.float32)
        scores[:, 0] = 0.0  # every beam starts identical, so only the first one may expand
        finished = np.zeros((images, beam_size), bool)
        previous = np.full((rows, 1), START_ID, np.int32)

        for _ in range(max_length):
            probabilities, *states = self._step(projected, previous, *states)
            log_probs = np.log(np.maximum(np.asarray(probabilities)[:, 0], 1e-30)).reshape(
                images, beam_size, -1)
            vocab_size = log_probs.shape[-1]
            log_probs[..., [PAD_ID, START_ID, UNK_ID]] = -np.inf
            log_probs[finished] = -np.inf
            log_probs[finished, PAD_ID] = 0.0  # a finished beam carries on unchanged, padded
            candidates = (scores[:, :, None] + log_probs).reshape(images, -1)
            top_scores, top_indices = tf.math.top_k(candidates, k=beam_size)
            scores, top_indices = top_scores.numpy(), top_indices.numpy()
            parent, word = top_indices // vocab_size, top_indices % vocab_size

            words = np.concatenate([np.take_along_axis(words, parent[..., None], axis=1),
                                    word[..., None]], axis=2)
            finished = np.take_along_axis(finished, parent, axis=1) | (word == END_ID)
            source_rows = (np.arange(images)[:, None] * beam_size + parent).reshape(-1)
            states = [np.asarray(state)[source_rows] for state in states]
            previous = word.reshape(rows, 1).astype(np.int32)
            if finished.all():
                break

        lengths = np.maximum((words != PAD_ID).sum(axis=2), 1)
        best = np.argmax(scores / lengths.astype(np.float32) ** length_penalty, axis=1)
        return [[int(w) for w in words[i, best[i]] if w not in (PAD_ID, END_ID)]
                for i in range(images)]
