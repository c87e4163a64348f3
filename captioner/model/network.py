"""The "merge" caption model: an image branch and a text branch added, then a word classifier;
and the attention decoder, which adds a third branch: at each word, the regions of the CNN's
feature map weighted by how well they match the recurrent output (Show, Attend and Tell's soft
attention, with the recurrent layer still reading only words).

Training reads whole captions at once (teacher forcing): the recurrent layer returns every step
and the projected image vector (and the attended regions) are added at every step. For decoding,
the same layers are rewired into an image encoder, which projects an image's regions once, and a
one-word step model that carries the recurrent state.

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


@keras.saving.register_keras_serializable(package="captioner")
class PerCaption(layers.Layer):
    """Each image's row repeated for each of its captions: (images, ...) and the captions
    (images * k, T), each image's k consecutive, give (images * k, ...). With one caption an image
    (decoding, self-critical training) it changes nothing. Registered, so models holding it load
    in safe mode wherever this module is imported."""

    def call(self, inputs: list[tf.Tensor]) -> tf.Tensor:
        images, captions = inputs
        return keras.ops.repeat(images, keras.ops.shape(captions)[0] // keras.ops.shape(images)[0],
                                axis=0)

    def compute_output_shape(self, input_shape: list[tuple]) -> tuple:
        return (None, *input_shape[0][1:])


@dataclass
class AttentionLayers:
    """The attention decoder's layers beside the merge ones, each named as its field. The regions
    are projected (and normalised) once per image, then repeated for each of its captions with
    the projected image; each recurrent output, projected the same width, is the query of a scaled
    dot-product attention over them, and the attended vector, projected to the recurrent width,
    joins the merge."""

    pool_regions: layers.GlobalAveragePooling1D
    image_per_caption: PerCaption
    regions_per_caption: PerCaption
    region_dropout: layers.Dropout
    region_projection: layers.Dense
    region_norm: layers.LayerNormalization
    word_query: layers.Dense
    region_attention: layers.Attention
    attended_dropout: layers.Dropout
    attended_projection: layers.Dense

    @classmethod
    def create(cls, attention_units: int, units: int, dropout: float) -> AttentionLayers:
        """New layers, made in this order always (see MergeLayers.create)."""
        return cls(
            layers.GlobalAveragePooling1D(name="pool_regions"),
            PerCaption(name="image_per_caption"),
            PerCaption(name="regions_per_caption"),
            layers.Dropout(dropout, name="region_dropout"),
            layers.Dense(attention_units, activation="relu", name="region_projection"),
            layers.LayerNormalization(name="region_norm"),
            layers.Dense(attention_units, name="word_query"),
            layers.Attention(use_scale=True, name="region_attention"),
            layers.Dropout(dropout, name="attended_dropout"),
            layers.Dense(units, name="attended_projection"))

    @classmethod
    def of(cls, model: keras.Model) -> AttentionLayers | None:
        """The attention layers of a trained captioner, or None for a merge captioner."""
        if "region_attention" not in {layer.name for layer in model.layers}:
            return None
        return cls(**{field.name: model.get_layer(field.name) for field in fields(cls)})

    def attend(self, sequence: keras.KerasTensor, regions: keras.KerasTensor,
               scores: bool = False) -> keras.KerasTensor | list[keras.KerasTensor]:
        """The attended vector of each step of `sequence` over projected `regions`, projected to
        the recurrent width; with `scores`, the attention weights (batch, steps, regions) instead."""
        query = self.word_query(sequence)
        if scores:
            # The layer's own weights, as it computes them: Keras 3.15 cannot give them from a
            # layer already called once (the output is "not connected to inputs").
            similarity = keras.ops.einsum("btd,brd->btr", query, regions)
            return keras.ops.softmax(similarity * self.region_attention.scale, axis=-1)
        attended = self.region_attention([query, regions])
        return self.attended_projection(self.attended_dropout(attended))


def reads_regions(model: keras.Model) -> bool:
    """Whether a captioner (or ensemble) takes image regions (batch, R, D) rather than one pooled
    vector (batch, D)."""
    return len(model.inputs[0].shape) == 3


def build_captioner(
    embedding_matrix: np.ndarray,
    feature_dim: int,
    units: int,
    rnn: str,
    dropout: float,
    train_embedding: bool,
    image_init_state: bool = False,
    regions: int | None = None,
    attention_units: int = 256,
) -> keras.Model:
    """Image features (batch, D) and caption prefixes (batch, T) -> next-word probabilities; with
    `regions`, the attention decoder over image regions (images, regions, D), whose mean is the
    pooled vector the merge reads, each image's captions consecutive in the batch (PerCaption).

    With `image_init_state`, the projected image also sets the recurrent layer's initial state
    ("init-inject" on top of the merge); otherwise that state starts at zero.
    """
    merge = MergeLayers.create(embedding_matrix, units, rnn, dropout, train_embedding,
                               image_init_state)
    attention = (AttentionLayers.create(attention_units, units, dropout)
                 if regions is not None else None)

    if attention is None:
        image_features = keras.Input((feature_dim,), name="image_features")
        image = merge.image_norm(merge.image_projection(merge.image_dropout(image_features)))
        caption = keras.Input((None,), dtype="int32", name="caption_tokens")
    else:
        caption = keras.Input((None,), dtype="int32", name="caption_tokens")
        image_features = keras.Input((regions, feature_dim), name="image_features")
        pooled = attention.pool_regions(image_features)
        image = attention.image_per_caption([merge.image_norm(merge.image_projection(
            merge.image_dropout(pooled))), caption])
        projected_regions = attention.regions_per_caption([attention.region_norm(
            attention.region_projection(attention.region_dropout(image_features))), caption])

    words = merge.word_dropout(merge.word_embedding(caption))
    if merge.image_to_state is not None:
        initial_state = [merge.image_to_state(image)] * merge.state_count
        sequence, *_ = merge.caption_rnn(words, initial_state=initial_state)
    else:
        sequence, *_ = merge.caption_rnn(words)

    branches = [sequence, merge.image_per_step(image)]
    if attention is not None:
        branches.append(attention.attend(sequence, projected_regions))
    merged = layers.Add(name="merge")(branches)
    next_word = merge.next_word(merge.decoder_hidden(merged))
    name = "merge_captioner" if attention is None else "attention_captioner"
    return keras.Model([image_features, caption], next_word, name=name)


def attention_scores_model(model: keras.Model) -> keras.Model | None:
    """(image regions, caption prefixes) -> each word's attention weights over the regions
    (batch, T, R), wired from the trained layers of `model` or of its first attention member;
    None when no member attends."""
    captioner = next((member for member in ensemble_members(model)
                      if AttentionLayers.of(member) is not None), None)
    if captioner is None:
        return None
    merge, attention = MergeLayers.of(captioner), AttentionLayers.of(captioner)
    image_features = keras.Input(captioner.inputs[0].shape[1:], name="image_features")
    image = merge.image_norm(merge.image_projection(attention.pool_regions(image_features)))
    regions = attention.region_norm(attention.region_projection(image_features))
    caption = keras.Input((None,), dtype="int32", name="caption_tokens")
    words = merge.word_embedding(caption)
    if merge.image_to_state is not None:
        sequence, *_ = merge.caption_rnn(
            words, initial_state=[merge.image_to_state(image)] * merge.state_count)
    else:
        sequence, *_ = merge.caption_rnn(words)
    return keras.Model([image_features, caption], attention.attend(sequence, regions, scores=True),
                       name="attention_scores")


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


def _ensemble_input(members: list[keras.Model], caption: keras.KerasTensor | None = None
                    ) -> tuple[keras.KerasTensor, keras.KerasTensor]:
    """The image input of an ensemble of `members` and the pooled vector a merge member reads: the
    regions when any member attends, their mean pooled (one row per caption when `caption` is
    given); else the pooled vector (both the same)."""
    shapes = [member.inputs[0].shape[1:] for member in members]
    image_features = keras.Input(max(shapes, key=len), name="image_features")
    if len(image_features.shape) == 2:
        return image_features, image_features
    pooled = layers.GlobalAveragePooling1D(name="pool_regions")(image_features)
    if caption is not None:
        pooled = PerCaption(name="image_per_caption")([pooled, caption])
    return image_features, pooled


def build_ensemble(members: list[keras.Model]) -> keras.Model:
    """One captioner averaging the next-word probabilities of `members` (trained captioners with
    the same vocabulary and image features), each renamed member_1, member_2, ... When any member
    attends, the ensemble takes image regions and gives merge members their mean."""
    for number, member in enumerate(members, start=1):
        member.name = f"member_{number}"
    if all(not reads_regions(member) for member in members):
        image_features, pooled = _ensemble_input(members)
        caption = keras.Input((None,), dtype="int32", name="caption_tokens")
    else:
        caption = keras.Input((None,), dtype="int32", name="caption_tokens")
        image_features, pooled = _ensemble_input(members, caption)
    probabilities = [member([image_features if reads_regions(member) else pooled, caption])
                     for member in members]
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
    """The decoding models of one captioner. An attention captioner's projected image is the
    pooled vector's projection followed by its projected regions, flattened: one row per image,
    which beam search repeats for each beam like the merge captioner's."""
    merge, attention = MergeLayers.of(model), AttentionLayers.of(model)
    units = merge.image_projection.units

    image_features = keras.Input(model.inputs[0].shape[1:], name="image_features")
    pooled = image_features if attention is None else attention.pool_regions(image_features)
    projected = merge.image_norm(merge.image_projection(pooled))
    initial_state = (merge.image_to_state(projected) if merge.image_to_state is not None
                     else keras.ops.zeros_like(projected))
    encoded = projected
    if attention is not None:
        regions = attention.region_norm(attention.region_projection(image_features))
        region_shape = tuple(regions.shape[1:])
        encoded = layers.Concatenate(name="image_and_regions")(
            [projected, layers.Flatten(name="flat_regions")(regions)])
    encode_image = keras.Model(image_features, [encoded, *[initial_state] * merge.state_count],
                               name="encode_image")

    image = keras.Input((encoded.shape[-1],), name="projected_image")
    previous_word = keras.Input((1,), dtype="int32", name="previous_word")
    states = [keras.Input((units,), name=f"state_{i}") for i in range(merge.state_count)]
    words = merge.word_embedding(previous_word)
    sequence, *new_states = merge.caption_rnn(words, initial_state=states)
    branches = [sequence, merge.image_per_step(image if attention is None else image[:, :units])]
    if attention is not None:
        step_regions = layers.Reshape(region_shape, name="step_regions")(image[:, units:])
        branches.append(attention.attend(sequence, step_regions))
    merged = layers.Add(name="merge")(branches)
    probabilities = merge.next_word(merge.decoder_hidden(merged))
    step = keras.Model([image, previous_word, *states], [probabilities, *new_states],
                       name="decode_step")
    return DecodingModels(encode_image, step)


def _ensemble_decoding_models(members: list[DecodingModels]) -> DecodingModels:
    """The members' decoding models joined: the projected image is the members' side by side, the
    states are every member's in turn, and each step averages the members' probabilities."""
    for number, member in enumerate(members, start=1):
        member.encode_image.name, member.step.name = f"encode_{number}", f"step_{number}"
    image_features, pooled = _ensemble_input([member.encode_image for member in members])
    encoded = [member.encode_image(image_features if reads_regions(member.encode_image) else pooled)
               for member in members]
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
