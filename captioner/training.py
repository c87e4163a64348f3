"""Training machinery: seeding, the tf.data caption pipeline, validation BLEU and resumable progress.

Training runs one epoch at a time. Each epoch's caption order and dropout masks are derived from
(seed, epoch) alone, so a run resumed from the checkpoint of epoch k continues exactly as the
uninterrupted run would have.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from captioner.decoding import Decoder
from captioner.files import atomic_path, read_json, write_json
from captioner.scoring import bleu4
from captioner.text import decode

# Captions are batched with others of similar length so that little of each batch is padding, and
# padded to their bucket's bound so that the training step is traced for only a few shapes.
LENGTH_BUCKETS = [10, 13, 16, 20]


def seed_everything(seed: int) -> None:
    """Seeds Python, NumPy and TensorFlow and makes TensorFlow's ops deterministic."""
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def caption_dataset(
    records: list[dict[str, Any]],
    features: np.ndarray,
    batch_size: int,
    shuffle_seed: int | None = None,
) -> tf.data.Dataset:
    """((image features, caption without its last token), caption without its start token).

    One element per caption: every caption of every image. `features` holds one row per record.
    With a seed, the order is shuffled by it (use `epoch_seed` for a new order each epoch).
    """
    rows = [row for row, record in enumerate(records) for _ in record["tokens"]]
    tokens = tf.ragged.constant([ids for record in records for ids in record["tokens"]],
                                dtype=tf.int32)
    image_features = tf.constant(features, tf.float32)
    dataset = tf.data.Dataset.from_tensor_slices((rows, tokens))
    if shuffle_seed is not None:
        dataset = dataset.shuffle(len(rows), seed=shuffle_seed, reshuffle_each_iteration=False)
    dataset = dataset.map(
        lambda row, ids: ((tf.gather(image_features, row), ids[:-1]), ids[1:]),
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True,
    )
    longest = max(len(ids) - 1 for record in records for ids in record["tokens"])
    boundaries = [bound for bound in LENGTH_BUCKETS if bound <= longest] + [longest + 1]
    dataset = dataset.bucket_by_sequence_length(
        element_length_func=lambda inputs, target: tf.shape(target)[0],
        bucket_boundaries=boundaries,
        bucket_batch_sizes=[batch_size] * (len(boundaries) + 1),
        pad_to_bucket_boundary=True,
    )
    return dataset.prefetch(tf.data.AUTOTUNE)


def epoch_seed(seed: int, epoch: int) -> int:
    """A 32-bit seed for one epoch's randomness, derived from the run's seed and the epoch alone."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])


def reseed_dropout(model: keras.Model, seed: int, epoch: int) -> None:
    """Sets every dropout layer's random state from (seed, epoch, layer).

    Keras does not save these states with a model, so without this a resumed run would draw other
    dropout masks than the uninterrupted one.
    """
    dropouts = [layer for layer in model.layers if isinstance(layer, keras.layers.Dropout)]
    for index, layer in enumerate(dropouts):
        layer.seed_generator.state.assign(
            np.array([epoch_seed(seed * 1000 + index, epoch), 0], dtype=np.uint32))


def validation_bleu(decoder: Decoder, features: np.ndarray, references: dict[str, list[str]],
                    vocabulary: list[str], max_length: int) -> float:
    """BLEU-4 of greedy captions of the validation images against their references."""
    captions = decoder.captions(features, beam_size=1, max_length=max_length, batch_size=256)
    hypotheses = {image: decode(ids, vocabulary)
                  for image, ids in zip(references, captions, strict=True)}
    return bleu4(hypotheses, references)


def fingerprint(settings: dict[str, Any], inputs: list[Path]) -> str:
    """SHA-256 over the settings and the bytes of every input file (folders walked in order)."""
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for path in inputs:
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            digest.update(str(file).encode())
            digest.update(hashlib.sha256(file.read_bytes()).digest())
    return digest.hexdigest()


@dataclass
class Progress:
    """What a training run has done so far: enough to resume it after the last finished epoch."""

    fingerprint: str
    history: list[dict[str, float]] = field(default_factory=list)
    best: float | None = None
    best_epoch: int = 0
    epochs_without_improvement: int = 0

    @property
    def epochs_done(self) -> int:
        return len(self.history)

    def record(self, logs: dict[str, float], improved: bool) -> None:
        """Adds a finished epoch's logs; `improved` says whether it is the new best."""
        self.history.append(logs)
        if improved:
            self.best_epoch, self.epochs_without_improvement = self.epochs_done, 0
        else:
            self.epochs_without_improvement += 1


class RunFolder:
    """A scratch folder holding a training run in progress, published to the models folder at the end.

    It holds the best model so far, the per-epoch models and a checkpoint of the last finished epoch
    (optimizer included) with the run's Progress. It is not a DVC output (DVC deletes outputs before
    rerunning a stage), so it outlives a killed run; the fingerprint keeps any other run from resuming
    from it.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.best_model = folder / "model.keras"
        self.epochs = folder / "epochs"
        self.progress_file = folder / "progress.json"

    def checkpoint(self, epochs_done: int) -> Path:
        return self.folder / f"checkpoint_{epochs_done:03d}.keras"

    def resumable(self, fingerprint: str) -> Progress | None:
        """The saved Progress if it belongs to this fingerprint; otherwise empties the folder."""
        if self.progress_file.is_file():
            progress = Progress(**read_json(self.progress_file))
            if progress.fingerprint == fingerprint and self.checkpoint(progress.epochs_done).is_file():
                return progress
        shutil.rmtree(self.folder, ignore_errors=True)
        return None

    def save_checkpoint(self, model: keras.Model, progress: Progress) -> None:
        """Saves the model with its optimizer state, then the progress that points at it."""
        checkpoint = self.checkpoint(progress.epochs_done)
        with atomic_path(checkpoint) as temporary:
            model.save(temporary)
        write_json(self.progress_file, asdict(progress))
        for old in self.folder.glob("checkpoint_*.keras"):
            if old != checkpoint:
                old.unlink()

    def load_checkpoint(self, progress: Progress, model: keras.Model) -> None:
        """Sets a freshly built and compiled `model`'s weights and optimizer state from the checkpoint.

        Filling a fresh model, rather than using the loaded one, keeps everything saved from the
        resumed run identical to what the uninterrupted run saves.
        """
        saved = keras.saving.load_model(self.checkpoint(progress.epochs_done), safe_mode=True)
        model.set_weights(saved.get_weights())
        model.optimizer.build(model.trainable_variables)
        for variable, value in zip(model.optimizer.variables, saved.optimizer.variables,
                                   strict=True):
            variable.assign(value)

    def publish(self, destination: Path) -> None:
        """Replaces `destination` by the best model and the per-epoch models, then removes the run."""
        with atomic_path(destination) as folder:
            folder.mkdir()
            for model_file in (self.best_model, self.best_model.with_suffix(".json")):
                shutil.copy2(model_file, folder / model_file.name)
            if self.epochs.is_dir():
                shutil.copytree(self.epochs, folder / "epochs")
        shutil.rmtree(self.folder)
