"""The "merge" caption model: an image branch and a text branch added, then a word classifier.

Training reads whole captions at once (teacher forcing): the recurrent layer returns every step
and the projected image vector is added at every step. For decoding, the same layers are rewired
into an image encoder and a one-word step model that carries the recurrent state.

An ensemble is one model holding several trained captioners (its members), whose next-word
probabilities it averages; it decodes the same way, each member carrying its own state.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from captioner.core.text import PAD_ID

# The layer that only train.image_init_state adds.
OPTIONAL_LAYERS = {"image_to_state"}


@dataclass
class MergeLayers:
    """The merge captioner's trained layers, each named as its field: the training model and the
    decoding models are wired from the same layers, and a loaded model gives them back by name.
    `image_to_state` is None when the recurrent state starts at zero."""

    image_dropout: layers.Dropout
    image_projection: layers.Dense
    image_norm: layers.LayerNormalization
    image_per_step: layers.Reshape
    word_embedding: layers.Embedding
    word_dropout: layers.Dropout
    caption_rnn: layers.RNN
    image_to_state: layers.Dense | None
    decoder_hidden: layers.Dense
    next_word: layers.Dense

    @classmethod
    def create(cls, embedding_matrix: np.ndarray, units: int, rnn: str, dropout: float,
               train_embedding: bool, image_init_state: bool) -> MergeLayers:
        """New layers. Keras draws each layer's random seeds as it is made, so they are made in
        this order, always."""
        vocab_size, embedding_dim = embedding_matrix.shape
        image_dropout = layers.Dropout(dropout, name="image_dropout")
        image_projection = layers.Dense(units, activation="relu", name="image_projection")
        image_norm = layers.LayerNormalization(name="image_norm")
        image_per_step = layers.Reshape((1, units), name="image_per_step")
        word_embedding = layers.Embedding(
            vocab_size, embedding_dim, mask_zero=True, trainable=train_embedding,
            embeddings_initializer=keras.initializers.Constant(embedding_matrix),
            name="word_embedding")
        word_dropout = layers.Dropout(dropout, name="word_dropout")
        recurrent = {"gru": layers.GRU, "lstm": layers.LSTM}[rnn]
        caption_rnn = recurrent(units, return_sequences=True, return_state=True, name="caption_rnn")
        image_to_state = (layers.Dense(units, activation="tanh", name="image_to_state")
                          if image_init_state else None)
        decoder_hidden = layers.Dense(units, activation="relu", name="decoder_hidden")
        # Probabilities stay float32 under a mixed-precision policy, for the loss and the beam scores.
        next_word = layers.Dense(vocab_size, activation="softmax", dtype="float32", name="next_word")
        return cls(image_dropout, image_projection, image_norm, image_per_step, word_embedding,
                   word_dropout, caption_rnn, image_to_state, decoder_hidden, next_word)

    @classmethod
    def of(cls, model: keras.Model) -> MergeLayers:
        """The layers of a trained (or loaded) merge captioner; a ValueError names the first one
        missing."""
        present = {layer.name for layer in model.layers}
        return cls(**{field.name: None if field.name in OPTIONAL_LAYERS and field.name not in present
                      else model.get_layer(field.name) for field in fields(cls)})

    @property
    def state_count(self) -> int:
        """The recurrent layer's states: an LSTM's hidden and cell state, a GRU's one."""
        return 2 if isinstance(self.caption_rnn, layers.LSTM) else 1


def build_captioner(
    embedding_matrix: np.ndarray,
    feature_dim: int,
    units: int,
    rnn: str,
    dropout: float,
    train_embedding: bool,
    image_init_state: bool = False,
) -> keras.Model:
    """Image features (batch, D) and caption prefixes (batch, T) -> next-word probabilities.

    With `image_init_state`, the projected image also sets the recurrent layer's initial state
    ("init-inject" on top of the merge); otherwise that state starts at zero.
    """
    merge = MergeLayers.create(embedding_matrix, units, rnn, dropout, train_embedding,
                               image_init_state)

    image_features = keras.Input((feature_dim,), name="image_features")
    image = merge.image_norm(merge.image_projection(merge.image_dropout(image_features)))

    caption = keras.Input((None,), dtype="int32", name="caption_tokens")
    words = merge.word_dropout(merge.word_embedding(caption))
    if merge.image_to_state is not None:
        initial_state = [merge.image_to_state(image)] * merge.state_count
        sequence, *_ = merge.caption_rnn(words, initial_state=initial_state)
    else:
        sequence, *_ = merge.caption_rnn(words)

    merged = layers.Add(name="merge")([sequence, merge.image_per_step(image)])
    next_word = merge.next_word(merge.decoder_hidden(merged))
    return keras.Model([image_features, caption], next_word, name="merge_captioner")


@keras.saving.register_keras_serializable(package="captioner")
class CaptionLoss(keras.losses.Loss):
    """The cross-entropy of each next word against the true word smoothed towards the uniform
    distribution by `label_smoothing` (Szegedy et al. 2016), averaged over the words that are not
    padding.

    Keras's SparseCategoricalCrossentropy has no label smoothing and CategoricalCrossentropy's needs
    one-hot targets (a vocabulary-wide row per word). Registered, so the models compiled with it load
    anywhere this module is imported (every model loader imports it).
    """

    def __init__(self, label_smoothing: float = 0.0, name: str = "caption_loss", **kwargs) -> None:
        super().__init__(name=name, **kwargs)
        self.label_smoothing = label_smoothing

    def call(self, y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
        targets = tf.cast(y_true, tf.int32)
        log_probabilities = tf.math.log(tf.clip_by_value(
            tf.cast(y_pred, tf.float32), keras.config.epsilon(), 1 - keras.config.epsilon()))
        per_word = -tf.gather(log_probabilities, targets, batch_dims=2)
        if self.label_smoothing:
            per_word = ((1 - self.label_smoothing) * per_word
                        - self.label_smoothing * tf.reduce_mean(log_probabilities, axis=-1))
        words = tf.cast(targets != PAD_ID, tf.float32)
        # Under a tf.distribute strategy each replica's share, as Keras's own losses scale theirs.
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        return tf.reduce_sum(per_word * words) / tf.maximum(tf.reduce_sum(words), 1.0) / replicas

    def get_config(self) -> dict:
        return {**super().get_config(), "label_smoothing": self.label_smoothing}


ENSEMBLE_NAME = "ensemble_captioner"


def build_ensemble(members: list[keras.Model]) -> keras.Model:
    """One captioner averaging the next-word probabilities of `members` (trained captioners with
    the same vocabulary and image features), each renamed member_1, member_2, ..."""
    for number, member in enumerate(members, start=1):
        member.name = f"member_{number}"
    image_features = keras.Input(members[0].inputs[0].shape[1:], name="image_features")
    caption = keras.Input((None,), dtype="int32", name="caption_tokens")
    probabilities = [member([image_features, caption]) for member in members]
    mean = layers.Average(name="mean_next_word")(probabilities)
    return keras.Model([image_features, caption], mean, name=ENSEMBLE_NAME)


def ensemble_members(model: keras.Model) -> list[keras.Model]:
    """The captioners an ensemble averages, or the model itself when it is a single captioner."""
    if model.name != ENSEMBLE_NAME:
        return [model]
    return [layer for layer in model.layers if isinstance(layer, keras.Model)]


@dataclass
class DecodingModels:
    """The trained layers rewired for decoding one word at a time.

    `encode_image` maps image features to [projected image, *initial recurrent states].
    """

    encode_image: keras.Model
    step: keras.Model


def decoding_models(model: keras.Model) -> DecodingModels:
    """Builds the image encoder and the step model from a trained (or loaded) captioner or ensemble.

    The step model maps (projected image, previous word (batch, 1), states) to next-word
    probabilities (batch, 1, vocab) and the new states.
    """
    members = ensemble_members(model)
    if len(members) == 1:
        return _captioner_decoding_models(members[0])
    return _ensemble_decoding_models([_captioner_decoding_models(member) for member in members])


def _captioner_decoding_models(model: keras.Model) -> DecodingModels:
    """The decoding models of one merge captioner."""
    merge = MergeLayers.of(model)
    units = merge.image_projection.units

    image_features = keras.Input((merge.image_projection.input.shape[-1],), name="image_features")
    projected = merge.image_norm(merge.image_projection(image_features))
    initial_state = (merge.image_to_state(projected) if merge.image_to_state is not None
                     else keras.ops.zeros_like(projected))
    encode_image = keras.Model(image_features, [projected, *[initial_state] * merge.state_count],
                               name="encode_image")

    image = keras.Input((units,), name="projected_image")
    previous_word = keras.Input((1,), dtype="int32", name="previous_word")
    states = [keras.Input((units,), name=f"state_{i}") for i in range(merge.state_count)]
    words = merge.word_embedding(previous_word)
    sequence, *new_states = merge.caption_rnn(words, initial_state=states)
    merged = layers.Add(name="merge")([sequence, merge.image_per_step(image)])
    probabilities = merge.next_word(merge.decoder_hidden(merged))
    step = keras.Model([image, previous_word, *states], [probabilities, *new_states],
                       name="decode_step")
    return DecodingModels(encode_image, step)


def _ensemble_decoding_models(members: list[DecodingModels]) -> DecodingModels:
    """The members' decoding models joined: the projected image is the members' side by side, the
    states are every member's in turn, and each step averages the members' probabilities."""
    for number, member in enumerate(members, start=1):
        member.encode_image.name, member.step.name = f"encode_{number}", f"step_{number}"
    feature_dim = members[0].encode_image.inputs[0].shape[-1]
    image_features = keras.Input((feature_dim,), name="image_features")
    encoded = [member.encode_image(image_features) for member in members]
    projected = layers.Concatenate(name="projected_images")([outputs[0] for outputs in encoded])
    encode_image = keras.Model(image_features, [projected, *[state for outputs in encoded
                                                             for state in outputs[1:]]],
                               name="encode_image")

    image = keras.Input((projected.shape[-1],), name="projected_images")
    previous_word = keras.Input((1,), dtype="int32", name="previous_word")
    widths = [member.step.inputs[0].shape[-1] for member in members]
    states = [keras.Input((state.shape[-1],), name=f"state_{i}")
              for i, state in enumerate(state for member in members
                                        for state in member.step.inputs[2:])]
    probabilities, new_states, image_start, state_start = [], [], 0, 0
    for member, width in zip(members, widths, strict=True):
        state_count = len(member.step.inputs) - 2
        member_image = image[:, image_start:image_start + width]
        outputs = member.step([member_image, previous_word,
                               *states[state_start:state_start + state_count]])
        probabilities.append(outputs[0])
        new_states.extend(outputs[1:])
        image_start, state_start = image_start + width, state_start + state_count
    mean = layers.Average(name="mean_next_word")(probabilities)
    step = keras.Model([image, previous_word, *states], [mean, *new_states], name="decode_step")
    return DecodingModels(encode_image, step)
