"""For comparison only: the seed's training scheme, re-implemented to time it against ours.

The seed was the classic Keras "merge" tutorial. Its model reads one caption prefix at a time and
predicts the next word: image features -> Dropout -> Dense(units, relu); prefix ids -> Embedding
(mask_zero) -> Dropout -> GRU/LSTM(units) returning only its last state; the two added -> Dense(units,
relu) -> Dense(vocab, softmax), trained with categorical cross-entropy. A Python generator yields,
for each group of 5 images, every (image, caption prefix post-padded to the longest caption) ->
one-hot next word pair of their captions as one batch.

Here it gets the same sizes as the project's own model (units, rnn, dropout, the embedding matrix
and vocabulary, the optimizer's learning rate) and the same data: a project directory's
data/captions, data/embeddings and data/features after the pipeline has run. It is timed for a
fixed budget after two warm-up batches (the first traces the training step for its batch shape,
the second for any batch size). Every pair has exactly one real target word, so the tokens it
counts are the pairs; the pipeline never uses this code.

    python benchmarks/seed_scheme.py --project DIR [--seconds 60]
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from captioner.core import quiet_start  # noqa: E402

quiet_start.install()

import keras  # noqa: E402
from keras import layers  # noqa: E402

from captioner.core import params  # noqa: E402
from captioner.core.files import read_npy  # noqa: E402
from captioner.core.paths import EMBEDDINGS, FEATURES, split_file  # noqa: E402
from captioner.core.text import PAD_ID  # noqa: E402
from captioner.model.splits import load_features, load_split  # noqa: E402

IMAGES_PER_BATCH = 5
WARM_UP_BATCHES = 2


def build_seed_model(embedding_matrix: np.ndarray, feature_dim: int, max_length: int, units: int,
                     rnn: str, dropout: float, train_embedding: bool) -> keras.Model:
    """The seed's merge model: (image features, padded prefix) -> next-word probabilities."""
    vocab_size, embedding_dim = embedding_matrix.shape
    image_features = keras.Input((feature_dim,), name="image_features")
    image = layers.Dropout(dropout)(image_features)
    image = layers.Dense(units, activation="relu")(image)

    prefix = keras.Input((max_length,), dtype="int32", name="prefix")
    words = layers.Embedding(vocab_size, embedding_dim, mask_zero=True, trainable=train_embedding,
                             embeddings_initializer=keras.initializers.Constant(embedding_matrix))(prefix)
    words = layers.Dropout(dropout)(words)
    sequence = {"gru": layers.GRU, "lstm": layers.LSTM}[rnn](units)(words)

    hidden = layers.Dense(units, activation="relu")(layers.Add()([image, sequence]))
    next_word = layers.Dense(vocab_size, activation="softmax")(hidden)
    return keras.Model([image_features, prefix], next_word, name="seed_merge_captioner")


def seed_batches(records: list[dict[str, Any]], features: np.ndarray, max_length: int,
                 vocab_size: int) -> Iterator[tuple[list[np.ndarray], np.ndarray]]:
    """The seed's generator, endlessly: ([image rows, padded prefixes], one-hot next words)
    for every caption prefix of each group of `IMAGES_PER_BATCH` images in turn."""
    groups = [range(start, min(start + IMAGES_PER_BATCH, len(records)))
              for start in range(0, len(records), IMAGES_PER_BATCH)]
    for group in itertools.cycle(groups):
        pairs = [(row, ids[:length], ids[length]) for row in group
                 for ids in records[row]["tokens"] for length in range(1, len(ids))]
        prefixes = np.full((len(pairs), max_length), PAD_ID, np.int32)
        for index, (_, prefix, _) in enumerate(pairs):
            prefixes[index, :len(prefix)] = prefix
        rows = [row for row, _, _ in pairs]
        targets = keras.utils.to_categorical([word for _, _, word in pairs], vocab_size)
        yield [features[rows], prefixes], targets


def seed_scheme_tokens_per_s(project: Path, seconds: float) -> float:
    """Real target tokens per second of the seed's scheme on `project`'s training split,
    timed for `seconds` after the warm-up batches, with `project`'s train params."""
    config = params.load(params.TrainParams, project / "params.yaml")
    keras.utils.set_random_seed(config.seed)
    split = load_split(project / split_file("train"), load_features(project / FEATURES))
    train, features = split.records, split.features
    embedding_matrix = read_npy(project / EMBEDDINGS)
    max_length = max(len(ids) for record in train for ids in record["tokens"])

    model = build_seed_model(embedding_matrix, features.shape[1], max_length, config.units,
                             config.rnn, config.dropout, config.train_embedding)
    model.compile(optimizer=keras.optimizers.Adam(config.learning_rate),
                  loss="categorical_crossentropy")
    batches = seed_batches(train, features, max_length, len(embedding_matrix))
    # The first batch logs, once and as an error, that the mask's boolean ops run without oneDNN.
    with quiet_start.notices_dropped():
        for inputs, targets in itertools.islice(batches, WARM_UP_BATCHES):
            model.train_on_batch(inputs, targets)

    tokens, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        inputs, targets = next(batches)
        model.train_on_batch(inputs, targets)
        tokens += len(targets)
    return tokens / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, default=Path("."),
                        help="a project directory on which the pipeline has run up to extract_features")
    parser.add_argument("--seconds", type=float, default=60.0, help="timing budget after warm-up")
    arguments = parser.parse_args()
    rate = seed_scheme_tokens_per_s(arguments.project, arguments.seconds)
    print(f"seed scheme: {rate:.1f} target tokens/s ({arguments.seconds:g} s budget)")


if __name__ == "__main__":
    main()
