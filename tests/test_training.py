"""A tiny training run learns, and the saved model reloads with the same predictions.

Repeatability is tested by tests/test_training_loop.py: a resumed run ends with the same weights
as an uninterrupted one."""

from __future__ import annotations

import keras
import numpy as np

from captioner.core.params import DecodingSettings
from captioner.core.text import PAD_ID, START_ID
from captioner.model.artifacts import load_model, save_model
from captioner.model.decoding import Decoder
from captioner.model.network import CaptionLoss, build_captioner
from captioner.training.data import caption_dataset, seed_everything
from tests.helpers.training import VOCABULARY, records


def train_tiny(epochs: int):
    seed_everything(0)
    train, features = records(30, shift=0)
    embedding = np.random.default_rng(0).normal(size=(8, 4)).astype(np.float32)
    model = build_captioner(embedding, 3, units=16, rnn="lstm", dropout=0.1, train_embedding=True)
    model.compile(optimizer=keras.optimizers.Adam(0.02), loss=CaptionLoss(label_smoothing=0.1))
    history = model.fit(caption_dataset(train, features, batch_size=8, shuffle_seed=0),
                        epochs=epochs, verbose=0, shuffle=False)
    return model, history.history["loss"], features


def test_loss_decreases_and_the_model_learns_the_captions(tmp_path):
    model, losses, features = train_tiny(epochs=15)
    assert losses[-1] < 0.5 * losses[0]
    captions = Decoder.from_model(model).caption_ids(features[:3], DecodingSettings(2, 6))
    assert [caption[0] for caption in captions] == [4, 5, 6]

    path = tmp_path / "model.keras"
    save_model(model, path, VOCABULARY, {"backbone": "test", "weights": "none", "dim": 3})
    reloaded = load_model(path)
    assert reloaded.vocabulary == VOCABULARY
    inputs = [features[:3], np.array([[START_ID, 4, 4]] * 3)]
    np.testing.assert_allclose(reloaded.model.predict(inputs, verbose=0),
                               model.predict(inputs, verbose=0), rtol=1e-6)
    assert Decoder.from_model(reloaded.model).caption_ids(features[:3], DecodingSettings(2, 6)) == captions


def test_the_caption_loss_leaves_padding_out_and_smooths_towards_uniform():
    rng = np.random.default_rng(0)
    probabilities = rng.dirichlet(np.ones(7), size=(2, 5)).astype(np.float32)
    targets = np.array([[5, 6, 3, 0, 0], [4, 3, 0, 0, 0]])
    unsmoothed = keras.losses.SparseCategoricalCrossentropy(ignore_class=PAD_ID)(targets, probabilities)
    np.testing.assert_allclose(float(CaptionLoss()(targets, probabilities)), float(unsmoothed), rtol=1e-6)

    words = targets != PAD_ID
    log_p = np.log(probabilities)
    true_word = -np.take_along_axis(log_p, targets[..., None], axis=-1)[..., 0]
    expected = ((0.8 * true_word - 0.2 * log_p.mean(axis=-1))[words]).mean()
    np.testing.assert_allclose(float(CaptionLoss(0.2)(targets, probabilities)), expected, rtol=1e-5)

    padding_changed = probabilities.copy()
    padding_changed[~words] = rng.dirichlet(np.ones(7), size=int((~words).sum()))
    np.testing.assert_allclose(float(CaptionLoss(0.2)(targets, padding_changed)), expected, rtol=1e-5)


def test_mixed_bfloat16_training_learns_and_keeps_float32_probabilities():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model, losses, features = train_tiny(epochs=15)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert model.get_layer("caption_rnn").compute_dtype == "bfloat16"
    assert losses[-1] < 0.5 * losses[0]
    probabilities = model.predict([features[:3], np.array([[START_ID, 4]] * 3)], verbose=0)
    assert probabilities.dtype == np.float32
    captions = Decoder.from_model(model).caption_ids(features[:3], DecodingSettings(2, 6))
    assert [caption[0] for caption in captions] == [4, 5, 6]
