"""A training run's state between epochs: its progress, its checkpoint folder and its fingerprint.

The folder outlives a killed run (it is not a DVC output: DVC deletes outputs before rerunning a
stage), and the fingerprint of the params and input files keeps any other run from resuming it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import keras

from captioner.core.files import atomic_path, read_json, write_json
from captioner.core.paths import ModelFolder
from captioner.core.phases import CROSS_ENTROPY, SELF_CRITICAL
from captioner.core.sources import sha256_of


def fingerprint(settings: dict[str, Any], inputs: list[Path]) -> str:
    """SHA-256 over the settings and the bytes of every input file (folders walked in order)."""
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for path in inputs:
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            digest.update(str(file).encode())
            digest.update(bytes.fromhex(sha256_of(file)))
    return digest.hexdigest()


def improves(monitor: str, new: float, best: float | None) -> bool:
    """Whether `new` beats `best` on `monitor` (BLEU-4 and CIDEr higher, loss lower); anything beats
    None."""
    if best is None:
        return True
    return new < best if monitor == "val_loss" else new > best


@dataclass
class Progress:
    """What a training run has done so far: enough to resume it after the last finished epoch.

    Epochs are numbered from 1: `best_epoch` is the number of the best epoch, 0 before any.
    """

    fingerprint: str
    history: list[dict[str, Any]] = field(default_factory=list)
    best: float | None = None
    best_epoch: int = 0
    epochs_without_improvement: int = 0
    # CROSS_ENTROPY, then SELF_CRITICAL once that phase has begun.
    phase: str = CROSS_ENTROPY

    @property
    def epochs_done(self) -> int:
        return len(self.history)

    @property
    def self_critical_epochs(self) -> int:
        return sum(logs["phase"] == SELF_CRITICAL for logs in self.history)

    def record(self, logs: dict[str, Any], monitor: str) -> bool:
        """Adds a finished epoch's logs; returns whether its `monitor` figure is the phase's best so
        far, which it then becomes."""
        self.history.append(logs)
        improved = improves(monitor, logs[monitor], self.best)
        if improved:
            self.best, self.best_epoch = logs[monitor], self.epochs_done
            self.epochs_without_improvement = 0
        else:
            self.epochs_without_improvement += 1
        return improved

    def begin_phase(self, phase: str) -> None:
        """Enters the next training phase, whose best model is chosen by its own monitor."""
        self.phase, self.best = phase, None

    def out_of_patience(self, patience: int) -> bool:
        """Whether the last `patience` epochs (at least one) brought no improvement."""
        return self.epochs_without_improvement >= max(patience, 1)


class RunFolder:
    """A scratch folder holding a training run in progress, published to the models folder at the end.

    It holds the best model so far, the per-epoch models and a checkpoint of the last finished epoch
    (optimizer included) with the run's Progress.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        layout = ModelFolder(folder)
        self.best_model, self.epochs = layout.model, layout.epochs
        self.progress_file = folder / "progress.json"

    def checkpoint(self, epochs_done: int) -> Path:
        return self.folder / f"checkpoint_{epochs_done:03d}.keras"

    def resume_or_clear(self, fingerprint: str) -> Progress:
        """The saved Progress if it belongs to this fingerprint; otherwise deletes the folder's
        content and returns a fresh Progress."""
        if self.progress_file.is_file():
            progress = Progress(**read_json(self.progress_file))
            if progress.fingerprint == fingerprint and self.checkpoint(progress.epochs_done).is_file():
                return progress
        shutil.rmtree(self.folder, ignore_errors=True)
        return Progress(fingerprint)

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

    def copy_to(self, folder: Path) -> None:
        """Copies the best model and the per-epoch models into `folder`, a new folder."""
        folder.mkdir(parents=True)
        for model_file in (self.best_model, self.best_model.with_suffix(".json")):
            shutil.copy2(model_file, folder / model_file.name)
        if self.epochs.is_dir():
            shutil.copytree(self.epochs, folder / "epochs")

    def publish(self, destination: Path) -> None:
        """Replaces `destination` by the best model and the per-epoch models, then removes the run."""
        with atomic_path(destination) as folder:
            self.copy_to(folder)
        shutil.rmtree(self.folder)
