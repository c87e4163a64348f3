"""The attention decoder: its decoding graph equals its training graph word by word, its weights are
the attention the word actually used (and the figures' weights each word's own step's), it saves
and loads, it joins an ensemble beside merge members, which read the mean of its regions, and
its regions are read row by row from the memory-mapped grid."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from captioner.core.params import DecodingSettings
from captioner.core.text import START_ID
from captioner.model.artifacts import load_model, save_model
from captioner.model.attention_maps import attended_captions
from captioner.model.decoding import Decoder
from captioner.model.network import (
    AttentionLayers,
    attention_scores_model,
    build_captioner,
    build_ensemble,
    decoding_models,
    reads_regions,
)
from captioner.model.splits import Regions

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


def test_each_word_s_weights_are_those_of_the_step_that_chose_it():
    model = captioner(7)
    features = regions_of(4, seed=4)
    settings = DecodingSettings(2, 6, 1.0)
    vocabulary = [f"w{i}" for i in range(VOCAB_SIZE)]
    attended = attended_captions(model, features, settings, vocabulary, batch_size=3)
    ids = Decoder.from_model(model).caption_ids(features, settings)
    assert [caption.words for caption in attended] == [[vocabulary[i] for i in row] for row in ids]
    scores = attention_scores_model(model)
    for image, (caption, row) in enumerate(zip(attended, ids, strict=True)):
        # Step k read the start token then words 1..k-1, and chose word k.
        expected = np.asarray(scores([features[image:image + 1],
                                      np.array([[START_ID, *row]], np.int32)]))[0, :len(row)]
        np.testing.assert_allclose(caption.weights.reshape(len(row), -1), expected, rtol=1e-5)
        assert caption.weights.shape == (len(row), 2, 2)


def test_regions_are_read_by_each_record_s_row_in_the_grid(tmp_path):
    grid = np.arange(5 * 2 * 3, dtype=np.float16).reshape(5, 2, 3)
    np.save(tmp_path / "grid.npy", grid)
    regions = Regions(np.load(tmp_path / "grid.npy", mmap_mode="r"), np.array([3, 0, 4]))
    assert regions.shape == (3, 2, 3) and len(regions) == 3
    np.testing.assert_array_equal(regions[1], grid[0])
    np.testing.assert_array_equal(regions[1:], grid[[0, 4]])
    np.testing.assert_array_equal(regions[np.array([2, 0])], grid[[4, 3]])
    assert regions[0].dtype == np.float32


def test_an_image_s_regions_given_once_for_its_captions_give_what_repeating_them_does():
    attending, merging = captioner(8), captioner(9, regions=None)
    features = regions_of(3, seed=5)
    tokens = np.random.default_rng(6).integers(4, VOCAB_SIZE, size=(6, 5)).astype(np.int32)
    repeated = np.repeat(features, 2, axis=0)  # each image's two captions consecutive
    for model in (attending, build_ensemble([attending, merging])):
        np.testing.assert_allclose(np.asarray(model([features, tokens])),
                                   np.asarray(model([repeated, tokens])), rtol=1e-6)
