"""The attention decoder: its decoding graph equals its training graph word by word, its weights are
the attention the word actually used, it saves and loads, and it joins an ensemble beside merge
members, which read the mean of its regions."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from captioner.core.params import DecodingSettings
from captioner.model.artifacts import load_model, save_model
from captioner.model.decoding import Decoder
from captioner.model.network import (
    AttentionLayers,
    attention_scores_model,
    build_captioner,
    build_ensemble,
    decoding_models,
    reads_regions,
)

REGIONS, DIM, VOCAB_SIZE = 4, 6, 12


def captioner(seed: int, regions: int | None = REGIONS, rnn: str = "gru") -> keras.Model:
    keras.utils.set_random_seed(seed)
    embedding = np.random.default_rng(seed).normal(size=(VOCAB_SIZE, 8)).astype(np.float32)
    model = build_captioner(embedding, DIM, 16, rnn, 0.0, True, image_init_state=True,
                            regions=regions, attention_units=8)
    # Weights large enough that the attention is far from uniform.
    for name in ("word_query", "region_projection") if regions else ():
        layer = model.get_layer(name)
        layer.set_weights([weight * 4 for weight in layer.get_weights()])
    return model


def regions_of(count: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(count, REGIONS, DIM)).astype(np.float32)


def step_by_step(model: keras.Model, features: np.ndarray, tokens: np.ndarray) -> np.ndarray:
    """Next-word probabilities of every prefix, through the decoding models one word at a time."""
    parts = decoding_models(model)
    projected, *states = parts.encode_image(features)
    steps = []
    for position in range(tokens.shape[1]):
        probabilities, *states = parts.step([projected, tf.constant(tokens[:, position:position + 1]),
                                             *states])
        steps.append(np.asarray(probabilities)[:, 0])
    return np.stack(steps, axis=1)


@pytest.mark.parametrize("rnn", ["gru", "lstm"])
def test_decoding_one_word_at_a_time_equals_the_training_graph(rnn):
    model = captioner(1, rnn=rnn)
    features = regions_of(3, seed=0)
    tokens = np.array([[2, 4, 5, 6, 7], [2, 8, 8, 9, 4], [2, 11, 10, 4, 5]], np.int32)
    np.testing.assert_allclose(step_by_step(model, features, tokens),
                               model.predict([features, tokens], verbose=0), rtol=1e-5, atol=1e-7)


def test_the_weights_are_a_distribution_over_regions_that_gives_the_attended_vector():
    model = captioner(2)
    attention = AttentionLayers.of(model)
    features, tokens = regions_of(3, seed=1), np.array([[2, 4, 5, 6]] * 3, np.int32)
    weights = np.asarray(attention_scores_model(model)([features, tokens]))
    assert weights.shape == (3, 4, REGIONS)
    np.testing.assert_allclose(weights.sum(axis=-1), 1.0, rtol=1e-6)
    assert weights.max() > 0.5, "weights this even say nothing about where a word looked"
    # The attended vector the training graph adds is these weights over the projected regions.
    projected = keras.Model(model.inputs, [attention.region_norm.output, attention.word_query.output,
                                           attention.region_attention.output])
    regions, _, attended = (np.asarray(value) for value in projected([features, tokens]))
    np.testing.assert_allclose(np.einsum("btr,brd->btd", weights, regions), attended,
                               rtol=1e-5, atol=1e-6)


def test_a_merge_captioner_has_no_attention_weights():
    model = captioner(3, regions=None)
    assert not reads_regions(model)
    assert AttentionLayers.of(model) is None
    assert attention_scores_model(model) is None


def test_a_saved_attention_captioner_loads_and_captions_the_same(tmp_path):
    model = captioner(4)
    path = tmp_path / "model.keras"
    save_model(model, path, [f"w{i}" for i in range(VOCAB_SIZE)],
               {"backbone": "efficientnet_lite0", "weights": "imagenet"})
    loaded = load_model(path).model
    assert reads_regions(loaded)
    features, settings = regions_of(5, seed=2), DecodingSettings(3, 8, 1.0)
    assert (Decoder.from_model(loaded).caption_ids(features, settings)
            == Decoder.from_model(model).caption_ids(features, settings))


def test_an_ensemble_of_merge_and_attention_gives_merge_members_the_mean_region():
    attending, merging = captioner(5), captioner(6, regions=None, rnn="lstm")
    features, tokens = regions_of(3, seed=3), np.array([[2, 4, 5, 6]] * 3, np.int32)
    alone = [attending.predict([features, tokens], verbose=0),
             merging.predict([features.mean(axis=1), tokens], verbose=0)]
    ensemble = build_ensemble([attending, merging])
    assert reads_regions(ensemble)
    np.testing.assert_allclose(ensemble.predict([features, tokens], verbose=0),
                               (alone[0] + alone[1]) / 2, rtol=1e-5)
    np.testing.assert_allclose(step_by_step(ensemble, features, tokens),
                               ensemble.predict([features, tokens], verbose=0), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(np.asarray(attention_scores_model(ensemble)([features, tokens])),
                               np.asarray(attention_scores_model(attending)([features, tokens])))
