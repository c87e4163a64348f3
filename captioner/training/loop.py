"""The training loop of one captioner: epochs of teacher forcing, validation, early stopping, the
learning-rate schedule and per-epoch checkpoints, then the self-critical epochs.

Training runs one epoch at a time. Each epoch's caption order and dropout masks are derived from
(seed, epoch) alone, so a run resumed from the checkpoint of epoch k continues exactly as the
uninterrupted run would have.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np

from captioner.core.params import DecodingSettings, TrainParams
from captioner.core.paths import epoch_model_name
from captioner.core.phases import CROSS_ENTROPY, SELF_CRITICAL
from captioner.model import scoring
from captioner.model.decoding import Decoder
from captioner.model.network import CaptionLoss, build_captioner
from captioner.training.data import TrainingData, caption_dataset, epoch_seed
from captioner.training.run_state import Progress, RunFolder
from captioner.training.self_critical import SelfCriticalTrainer


def reseed_dropout(model: keras.Model, seed: int, epoch: int) -> None:
    """Sets every dropout layer's random state from (seed, epoch, layer).

    Keras does not save these states with a model, so without this a resumed run would draw other
    dropout masks than the uninterrupted one.
    """
    # A dropout layer of rate 0 draws nothing and has no random state.
    dropouts = [layer for layer in model.layers
                if isinstance(layer, keras.layers.Dropout) and layer.rate > 0]
    for index, layer in enumerate(dropouts):
        layer.seed_generator.state.assign(
            np.array([epoch_seed(seed * 1000 + index, epoch), 0], dtype=np.uint32))


# Validation images decoded at once: greedy decoding of a few hundred images fits easily.
VALIDATION_BATCH = 256


def validation_scores(decoder: Decoder, features: np.ndarray, references: dict[str, list[str]],
                      vocabulary: list[str], max_length: int) -> dict[str, float]:
    """val_bleu4 and val_cider of greedy captions of the validation images against their references."""
    captions = decoder.captions(features, DecodingSettings(beam_size=1, max_length=max_length),
                                vocabulary, batch_size=VALIDATION_BATCH)
    hypotheses = dict(zip(references, captions, strict=True))
    return {f"val_{name}": value for name, value in scoring.validation_scores(
        hypotheses, references).items()}


OPTIMIZERS = {"adam": keras.optimizers.Adam, "rmsprop": keras.optimizers.RMSprop,
              "sgd": keras.optimizers.SGD}


def compile_for(model: keras.Model, config: TrainParams, phase: str) -> None:
    """Compiles `model` with the optimizer of a training phase: `config.optimizer` for cross-entropy,
    Adam at `config.self_critical_learning_rate` for self-critical training."""
    # Named for the phase: Keras would number unnamed ones in creation order, and that name is saved
    # with the model, so a resumed run would save other bytes than the uninterrupted one.
    optimizer = (OPTIMIZERS[config.optimizer](learning_rate=config.learning_rate, name=phase)
                 if phase == CROSS_ENTROPY
                 else keras.optimizers.Adam(learning_rate=config.self_critical_learning_rate,
                                            name=phase))
    model.compile(optimizer=optimizer, loss=CaptionLoss(config.label_smoothing))


def compiled_captioner(config: TrainParams, embedding_matrix: np.ndarray,
                       feature_shape: tuple[int, ...], phase: str = CROSS_ENTROPY) -> keras.Model:
    """A new captioner built as `config` says (precision, decoder, layers) for image features of
    `feature_shape` ((D,) pooled or (R, D) regions, as the decoder reads), compiled for `phase`."""
    keras.mixed_precision.set_global_policy(config.precision)
    regions = feature_shape[0] if config.decoder == "attention" else None
    model = build_captioner(embedding_matrix, feature_shape[-1], config.units, config.rnn,
                            config.dropout, config.train_embedding, config.image_init_state,
                            regions, config.attention_units)
    compile_for(model, config, phase)
    return model


def learning_rate(config: TrainParams, epoch: int) -> float:
    """The learning rate of 0-based `epoch`: the initial rate decayed once per epoch."""
    return config.learning_rate * config.learning_rate_decay ** epoch


def phase_monitor(config: TrainParams, phase: str) -> str:
    """The validation figure that chooses the best model of a phase."""
    return config.monitor if phase == CROSS_ENTROPY else config.self_critical_monitor


def final_monitor(config: TrainParams) -> str:
    """The validation figure that chooses the published model: that of the run's last phase."""
    return phase_monitor(config, SELF_CRITICAL if config.self_critical_epochs else CROSS_ENTROPY)


class Validation:
    """A model's val_loss on the validation captions, and val_bleu4 and val_cider of its greedy
    captions of the first `data.bleu_images` validation images."""

    def __init__(self, data: TrainingData, batch_size: int) -> None:
        self.dataset = caption_dataset(data.validation, data.validation_features, batch_size)
        records = data.validation[:data.bleu_images]
        self.references = {record["image"]: record["captions"] for record in records}
        self.features = data.validation_features[:len(records)]
        self.vocabulary, self.max_length = data.vocabulary, data.max_length

    def __call__(self, model: keras.Model, decoder: Decoder) -> dict[str, float]:
        """The scores of `model`, compiled with the training loss, decoding with `decoder`."""
        return {"val_loss": float(model.evaluate(self.dataset, verbose=0)),
                **validation_scores(decoder, self.features, self.references, self.vocabulary,
                                    self.max_length)}


class EpochEnd:
    """What follows every epoch of either phase: `validation` scores the model, the best model so far
    and (with `save_every_epoch`) the epoch's model are written with `save`, the run is
    checkpointed, and `on_epoch(number, logs)` is told the epoch's number (from 1) and its phase,
    loss (cross-entropy) or reward (self-critical), val_loss, val_bleu4, val_cider and fit_seconds."""

    def __init__(self, model: keras.Model, validation: Validation, config: TrainParams,
                 run: RunFolder, save: Callable[[keras.Model, Path], None],
                 on_epoch: Callable[[int, dict[str, float]], None]) -> None:
        self.model, self.validation, self.config = model, validation, config
        self.run, self.save, self.on_epoch = run, save, on_epoch
        self.decoder = Decoder.from_model(model)

    def __call__(self, progress: Progress, logs: dict[str, Any]) -> None:
        logs = {**logs, "phase": progress.phase, **self.validation(self.model, self.decoder)}
        if progress.record(logs, phase_monitor(self.config, progress.phase)):
            self.save(self.model, self.run.best_model)
        if self.config.save_every_epoch:
            self.save(self.model, self.run.epochs / epoch_model_name(progress.epochs_done))
        self.run.save_checkpoint(self.model, progress)
        self.on_epoch(progress.epochs_done, logs)


def train(model: keras.Model, data: TrainingData, config: TrainParams, progress: Progress,
          end_epoch: EpochEnd) -> None:
    """Trains `model` (compiled for `progress.phase`, with `progress`'s checkpoint already loaded)
    on `data` from the epoch after `progress`, which it updates: cross-entropy epochs until
    `config.epochs` or early stopping (best by `config.monitor`), then `config.self_critical_epochs`
    self-critical epochs starting from the last or the best cross-entropy model
    (`config.self_critical_start`), best by `config.self_critical_monitor`, which then chooses the
    published model. `end_epoch` (made for the same model, config and data) follows every epoch.
    """
    if progress.phase == CROSS_ENTROPY:
        train_cross_entropy(model, data, config, progress, end_epoch)
        if config.self_critical_epochs:
            begin_self_critical(model, config, end_epoch.run, progress)
    if progress.self_critical_epochs < config.self_critical_epochs:
        train_self_critical(model, data, config, progress, end_epoch)


def train_cross_entropy(model: keras.Model, data: TrainingData, config: TrainParams,
                        progress: Progress, end_epoch: EpochEnd) -> None:
    """Teacher-forced epochs until `config.epochs` or `config.patience` epochs without a better
    `config.monitor`."""
    while progress.epochs_done < config.epochs and not progress.out_of_patience(config.patience):
        epoch = progress.epochs_done
        reseed_dropout(model, config.seed, epoch)
        model.optimizer.learning_rate.assign(learning_rate(config, epoch))
        started = time.perf_counter()
        history = model.fit(
            caption_dataset(data.train, data.train_features, config.batch_size,
                            shuffle_seed=epoch_seed(config.seed, epoch), mirrored=data.train_mirrored),
            initial_epoch=epoch, epochs=epoch + 1, verbose=0, shuffle=False,
        )
        end_epoch(progress, {"loss": float(history.history["loss"][-1]),
                             "fit_seconds": time.perf_counter() - started})


def begin_self_critical(model: keras.Model, config: TrainParams, run: RunFolder,
                        progress: Progress) -> None:
    """Switches from cross-entropy to self-critical training: from the best cross-entropy model if
    `config.self_critical_start` says so, with the phase's own optimizer."""
    if config.self_critical_start == "best":
        best = keras.saving.load_model(run.best_model, safe_mode=True)
        model.set_weights(best.get_weights())
    compile_for(model, config, SELF_CRITICAL)
    progress.begin_phase(SELF_CRITICAL)


def train_self_critical(model: keras.Model, data: TrainingData, config: TrainParams,
                        progress: Progress, end_epoch: EpochEnd) -> None:
    """Self-critical epochs until the run has `config.self_critical_epochs` of them."""
    trainer = SelfCriticalTrainer(model, data.train, data.vocabulary, config.self_critical_samples,
                                  config.self_critical_batch_images, config.self_critical_max_words)
    while progress.self_critical_epochs < config.self_critical_epochs:
        end_epoch(progress, trainer.epoch(data.train_features,
                                          epoch_seed(config.seed, progress.epochs_done)))
