"""Self-critical training's parts: the CIDEr-D reward, the baseline, caption sampling, and the
direction of its gradient step."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from pycocoevalcap.cider.cider import Cider

from captioner.core.text import END_ID, PAD_ID, START_ID, UNK_ID, clean
from captioner.training.run_state import SELF_CRITICAL
from captioner.training.self_critical import CiderD, SelfCriticalTrainer, advantages, sample_captions
from tests.helpers.training import VOCABULARY, records, tiny_config, tiny_model

REFERENCES = [
    ["A dog runs across the grass .", "A brown dog is running on a lawn .", "dog on grass"],
    ["Two children play in the water .", "Kids splash in a pool ."],
    ["A man rides a bike down a hill .", "A cyclist goes down the road ."],
]
HYPOTHESES = ["a dog is running on the grass", "two kids play in the pool", "a man rides a bike"]


def test_cider_d_equals_pycocoevalcap_when_both_count_document_frequencies_over_the_same_images():
    truth = {str(i): [" ".join(clean(text)) for text in refs] for i, refs in enumerate(REFERENCES)}
    result = {str(i): [text] for i, text in enumerate(HYPOTHESES)}
    _, expected = Cider().compute_score(truth, result)
    reward = CiderD(REFERENCES)
    mine = [reward.score(text, i) for i, text in enumerate(HYPOTHESES)]
    np.testing.assert_allclose(mine, expected, rtol=1e-9)


def test_cider_d_prefers_the_right_image_and_scores_nothing_as_zero():
    reward = CiderD(REFERENCES)
    assert reward.score("a dog runs on the grass", 0) > reward.score("a dog runs on the grass", 1)
    assert reward.score("", 0) == 0.0


def test_each_advantage_is_the_reward_minus_the_mean_of_the_image_s_other_samples():
    rewards = np.array([[1.0, 2.0, 3.0], [0.5, 0.5, 0.5]], np.float32)
    np.testing.assert_allclose(advantages(rewards), [-1.5, 0.0, 1.5, 0.0, 0.0, 0.0])


def fixed_step_model(vocab: int, ends_after: int):
    """An encoder and step function whose next-word distribution is uniform over every token but the
    end token for `ends_after` steps, then all on the end token."""
    def encode(features):
        return [features, np.zeros((len(features), 1), np.float32)]

    def step(projected, previous, count):
        probabilities = np.full((len(previous), 1, vocab), 1.0, np.float32)
        probabilities[:, :, END_ID] = 0.0
        if count[0, 0] >= ends_after:
            probabilities[:] = 0.0
            probabilities[:, :, END_ID] = 1.0
        return [probabilities, count + 1]

    return encode, step


@pytest.mark.parametrize("ends_after", [3, 50])
def test_sampled_captions_are_real_words_then_one_end_then_padding(ends_after):
    encode, step = fixed_step_model(vocab=12, ends_after=ends_after)
    features = np.zeros((4, 2), np.float32)
    words = sample_captions(encode, step, features, samples=3, max_words=10,
                            rng=np.random.default_rng(7))
    again = sample_captions(encode, step, features, samples=3, max_words=10,
                            rng=np.random.default_rng(7))
    np.testing.assert_array_equal(words, again)
    assert words.shape == (12, 10)
    for row in words:
        body = row[:min(ends_after, 10)]
        assert not np.isin(body, [PAD_ID, START_ID, UNK_ID, END_ID]).any()
        if ends_after < 10:
            assert row[ends_after] == END_ID and (row[ends_after + 1:] == PAD_ID).all()
    assert len({tuple(row) for row in words}) > 1, "every sample drew the same caption"


def test_cider_d_clips_repeated_words_to_their_count_in_the_references():
    # A caption that repeats a word gains nothing for the repeats: pycocoevalcap's CIDEr-D clips each
    # n-gram's count to the reference's (dog dog dog scores below a plain dog caption).
    repeated, plain = "dog dog dog on the grass", "a dog on the grass"
    truth = {str(i): [" ".join(clean(text)) for text in refs] for i, refs in enumerate(REFERENCES)}
    _, expected = Cider().compute_score(truth, {"0": [repeated], "1": [HYPOTHESES[1]],
                                                "2": [HYPOTHESES[2]]})
    reward = CiderD(REFERENCES)
    assert reward.score(repeated, 0) == pytest.approx(expected[0], rel=1e-9)
    assert reward.score(repeated, 0) < reward.score(plain, 0)


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
