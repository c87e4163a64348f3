"""Beam search: greedy equivalence, finding a better sequence than greedy, batching invariance; and
the sampler of self-critical training: real words, one end token, then padding."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from captioner.core.params import DecodingSettings
from captioner.core.text import END_ID, PAD_ID, START_ID, UNK_ID
from captioner.model.decoding import Decoder, sample_captions
from captioner.model.network import build_captioner

VOCAB_SIZE = 12


@pytest.fixture(scope="module", params=[("gru", False, None), ("lstm", True, None), ("gru", True, 4)],
                ids=["gru-merge", "lstm-merge-and-init-state", "gru-attention-over-4-regions"])
def model(request):
    rnn, image_init_state, regions = request.param
    rng = np.random.default_rng(0)
    embedding = rng.normal(size=(VOCAB_SIZE, 6)).astype(np.float32)
    captioner = build_captioner(embedding, feature_dim=5, units=16, rnn=rnn, dropout=0.0,
                                train_embedding=True, image_init_state=image_init_state,
                                regions=regions, attention_units=8)
    # Random weights large enough that the argmax varies from step to step.
    for layer_name in ("caption_rnn", "next_word", "decoder_hidden"):
        layer = captioner.get_layer(layer_name)
        layer.set_weights([w * 3 for w in layer.get_weights()])
    return captioner


def image_features(model, count: int, seed: int) -> np.ndarray:
    """Random image inputs of the model's shape: pooled vectors or regions."""
    shape = (count, *model.inputs[0].shape[1:])
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def reference_greedy(model, features, max_length):
    """Greedy decoding by rerunning the whole training model on the growing prefix."""
    results = []
    for vector in features:
        prefix = [START_ID]
        for _ in range(max_length):
            probabilities = model.predict([vector[None], np.array([prefix])], verbose=0)[0, -1]
            probabilities[[PAD_ID, UNK_ID, START_ID]] = 0
            word = int(np.argmax(probabilities))
            prefix.append(word)
            if word == END_ID:
                break
        results.append([w for w in prefix[1:] if w != END_ID])
    return results


def test_beam_one_equals_greedy_over_the_training_graph(model):
    features = image_features(model, 6, seed=1)
    decoded = Decoder.from_model(model).caption_ids(features, DecodingSettings(1, max_length=8))
    assert decoded == reference_greedy(model, features, max_length=8)


def test_batched_decoding_equals_one_image_at_a_time(model):
    features = image_features(model, 7, seed=2)
    decoder = Decoder.from_model(model)
    together = decoder.caption_ids(features, DecodingSettings(3, max_length=8), batch_size=7)
    alone = [decoder.caption_ids(features[i:i + 1], DecodingSettings(3, max_length=8))[0]
             for i in range(7)]
    assert together == alone


def markov_decoder(transitions):
    """A decoder whose next-word distribution depends only on the previous word."""
    table = np.zeros((6, 6), np.float32)  # words: 0 pad, 1 unk, 2 start, 3 end, 4 "w", 5 "v"
    for previous, distribution in transitions.items():
        for word, probability in distribution.items():
            table[previous, word] = probability

    def step(projected, previous, state):
        return tf.gather(table, previous[:, 0])[:, None, :], state

    return Decoder(lambda features: (features, tf.zeros([tf.shape(features)[0], 1])), step)


def test_beam_search_finds_a_more_probable_sequence_than_greedy():
    # Greedy takes "v" (0.6), then "w" (0.35), then "end": 0.21 in all. The caption "w" then
    # "end" has probability 0.4 * 1.0 and beam search must find it.
    decoder = markov_decoder({
        START_ID: {5: 0.6, 4: 0.4},
        5: {4: 0.35, 3: 0.3, 5: 0.25, 0: 0.1},
        4: {END_ID: 1.0},
    })
    features = np.zeros((1, 1), np.float32)
    assert decoder.caption_ids(features, DecodingSettings(1, max_length=5)) == [[5, 4]]
    assert decoder.caption_ids(features, DecodingSettings(2, max_length=5)) == [[4]]


def test_the_unknown_word_is_never_generated():
    decoder = markov_decoder({START_ID: {UNK_ID: 0.9, 4: 0.1}, 4: {END_ID: 1.0}})
    assert decoder.caption_ids(np.zeros((1, 1), np.float32), DecodingSettings(2, max_length=3)) == [[4]]


def test_length_penalty_favours_longer_captions():
    decoder = markov_decoder({
        START_ID: {END_ID: 0.5, 4: 0.5},
        4: {4: 0.9, END_ID: 0.1},
    })
    features = np.zeros((1, 1), np.float32)
    assert decoder.caption_ids(features, DecodingSettings(2, max_length=3)) == [[]]
    # [w w w] (cut at max_length) has log-probability -0.90, -0.30 per word, against -0.69 for [].
    assert decoder.caption_ids(features, DecodingSettings(2, 3, length_penalty=1.0)) == [[4, 4, 4]]


# Sampling, self-critical training's decoder.

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
