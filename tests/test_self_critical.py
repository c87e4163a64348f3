"""Self-critical training's parts: the baseline and the direction of its gradient step (its reward,
CIDEr-D, is tested in test_scoring.py, its sampler in test_decoding.py)."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from captioner.core.phases import SELF_CRITICAL
from captioner.core.text import END_ID, START_ID
from captioner.training.self_critical import SelfCriticalTrainer, advantages
from tests.helpers.training import VOCABULARY, records, tiny_config, tiny_model


def test_each_advantage_is_the_reward_minus_the_mean_of_the_image_s_other_samples():
    rewards = np.array([[1.0, 2.0, 3.0], [0.5, 0.5, 0.5]], np.float32)
    np.testing.assert_allclose(advantages(rewards), [-1.5, 0.0, 1.5, 0.0, 0.0, 0.0])


def test_a_self_critical_step_makes_captions_above_the_baseline_likelier_and_those_below_less():
    model = tiny_model(tiny_config(learning_rate=0.05), SELF_CRITICAL)
    train, features = records(3, shift=0)
    trainer = SelfCriticalTrainer(model, train, VOCABULARY, samples=2, batch_images=1, max_words=4)
    # Two sampled captions of image 0: "a a <end>" rewarded above the baseline, "b b <end>" below.
    words = np.array([[4, 4, END_ID], [5, 5, END_ID]], np.int32)
    previous = np.array([[START_ID, 4, 4], [START_ID, 5, 5]], np.int32)
    image = np.repeat(features[:1], 2, axis=0)

    def log_likelihoods() -> np.ndarray:
        probabilities = model.predict([image, previous], verbose=0)
        return np.log(np.take_along_axis(probabilities, words[..., None], axis=2)).sum(axis=(1, 2))

    before = log_likelihoods()
    trainer._apply(tf.constant(image), tf.constant(previous), tf.constant(words),
                   tf.constant(np.array([1.0, -1.0], np.float32)), tf.constant(6.0))
    after = log_likelihoods()
    assert after[0] > before[0] and after[1] < before[1]
