"""Decodes with six freshly built models in one process, as evaluate does with every epoch's
model, then traces a graph function of its own six times: the process's stderr is the test."""

from __future__ import annotations

from captioner.core import quiet_start

quiet_start.install()

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from captioner.core.params import DecodingSettings  # noqa: E402
from captioner.model.decoding import Decoder  # noqa: E402
from captioner.model.network import build_captioner  # noqa: E402

embedding = np.random.default_rng(0).normal(size=(12, 6)).astype(np.float32)
for _ in range(6):
    model = build_captioner(embedding, feature_dim=5, units=8, rnn="gru", dropout=0.0,
                            train_embedding=True, image_init_state=True)
    Decoder.from_model(model).caption_ids(np.zeros((3, 5), np.float32), DecodingSettings(2, 4))


@tf.function
def retraced_elsewhere(x: tf.Tensor) -> tf.Tensor:
    return x + 1


for size in range(1, 7):
    retraced_elsewhere(tf.zeros([size]))
