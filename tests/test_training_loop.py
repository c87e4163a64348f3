"""The training loop in captioner.training.loop: early stopping on each monitor, the learning-rate
schedule, the self-critical phase after cross-entropy, and resuming a run (interrupted in either
phase, stopped early, or finished) from its run folder."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import keras
import numpy as np
import pytest

from captioner.core import params
from captioner.core.phases import CROSS_ENTROPY, SELF_CRITICAL
from captioner.model.artifacts import save_model
from captioner.training.data import TrainingData
from captioner.training.loop import EpochEnd, Validation, learning_rate, train
from captioner.training.run_state import RunFolder, improves
from captioner.training.self_critical import SelfCriticalTrainer
from tests.helpers.training import VOCABULARY, records, tiny_config, tiny_model


def training_data(validation_shift: int) -> TrainingData:
    """With a validation shift of 0 validation agrees with training; otherwise the model that
    learns the training captions gets the validation captions wrong, so validation worsens."""
    train_records, train_features = records(24, shift=0)
    val_records, val_features = records(6, shift=validation_shift)
    return TrainingData(train_records, train_features, val_records, val_features, VOCABULARY,
                        bleu_images=6)






def run_training(folder: Path, settings: params.TrainParams, data: TrainingData):
    """Builds a model, resumes from `folder` when it holds this run, trains; returns the progress,
    the epochs reported and each reported epoch's learning rate."""
    run = RunFolder(folder)
    progress = run.resume_or_clear("fingerprint")
    model = tiny_model(settings, progress.phase)
    if progress.epochs_done:
        run.load_checkpoint(progress, model)
    reported, rates = [], []

    def on_epoch(number, logs):
        reported.append(number)
        rates.append(float(model.optimizer.learning_rate.numpy()))

    train(model, data, settings, progress,
          EpochEnd(model, Validation(data, settings.batch_size), settings, run,
                   lambda trained, path: save_model(trained, path, VOCABULARY, {}), on_epoch))
    return progress, reported, rates, model


def assert_same_run(resumed, resumed_model, whole, whole_model) -> None:
    """The resumed run logged what the uninterrupted one did (but for the seconds taken) and ended
    with the same weights, bit for bit."""
    assert resumed.history == [{**logs, "fit_seconds": resumed.history[i]["fit_seconds"]}
                               for i, logs in enumerate(whole.history)]
    for mine, theirs in zip(resumed_model.get_weights(), whole_model.get_weights(), strict=True):
        np.testing.assert_array_equal(mine, theirs)


def expected_stop(history: list[dict], monitor: str, patience: int) -> tuple[int, int]:
    """(epochs run, best epoch) by the rule: stop after `patience` epochs without improvement."""
    best, best_epoch, waiting = None, 0, 0
    for number, logs in enumerate(history, start=1):
        if improves(monitor, logs[monitor], best):
            best, best_epoch, waiting = logs[monitor], number, 0
        else:
            waiting += 1
            if waiting >= patience:
                return number, best_epoch
    return len(history), best_epoch


@pytest.mark.parametrize("monitor", ["val_loss", "val_bleu4", "val_cider"])
def test_patience_stops_at_the_first_epoch_out_of_patience_and_keeps_the_best(tmp_path, monitor):
    settings = tiny_config(monitor=monitor, patience=2, epochs=12)
    progress, reported, _, _ = run_training(tmp_path / "run", settings, training_data(1))
    assert len(progress.history) < settings.epochs, "validation kept improving: no early stop"
    assert (len(progress.history), progress.best_epoch) == expected_stop(
        progress.history, monitor, settings.patience)
    assert reported == list(range(1, len(progress.history) + 1))
    best_value = progress.history[progress.best_epoch - 1][monitor]
    assert progress.best == best_value
    values = [logs[monitor] for logs in progress.history]
    assert best_value == (min(values) if monitor == "val_loss" else max(values))
    saved_epochs = sorted(path.name for path in (tmp_path / "run/epochs").glob("*.keras"))
    assert saved_epochs == [f"epoch_{n:03d}.keras" for n in reported]


def test_learning_rate_decays_once_per_epoch(tmp_path):
    settings = tiny_config(learning_rate_decay=0.5, epochs=3, patience=3)
    _, reported, rates, _ = run_training(tmp_path / "run", settings, training_data(0))
    assert reported == [1, 2, 3]
    np.testing.assert_allclose(rates, [0.02, 0.01, 0.005], rtol=1e-6)
    assert [learning_rate(settings, epoch) for epoch in range(3)] == pytest.approx(rates)


def test_a_resumed_run_ends_as_the_uninterrupted_one(tmp_path):
    settings = tiny_config(epochs=2, patience=2)
    whole, _, _, whole_model = run_training(tmp_path / "whole", settings, training_data(0))
    run_training(tmp_path / "parts", dataclasses.replace(settings, epochs=1), training_data(0))
    resumed, reported, _, resumed_model = run_training(tmp_path / "parts", settings,
                                                       training_data(0))
    assert reported == [2]
    assert_same_run(resumed, resumed_model, whole, whole_model)


@pytest.mark.parametrize("case", ["stopped early", "finished"])
def test_resuming_a_run_that_ended_trains_no_more(tmp_path, case):
    settings = tiny_config(patience=1, epochs=12) if case == "stopped early" else tiny_config(epochs=2)
    first, _, _, _ = run_training(tmp_path / "run", settings, training_data(1))
    assert (len(first.history) < settings.epochs) == (case == "stopped early")
    again, reported, _, _ = run_training(tmp_path / "run", settings, training_data(1))
    assert reported == []
    assert again == first


SELF_CRITICAL_SETTINGS = {"epochs": 2, "patience": 2, "self_critical_epochs": 2, "monitor": "val_bleu4",
                          "self_critical_monitor": "val_cider"}


@pytest.fixture(scope="module")
def self_critical_run(tmp_path_factory):
    """Two cross-entropy then two self-critical epochs, uninterrupted: (run folder, progress,
    epochs reported, model)."""
    folder = tmp_path_factory.mktemp("self_critical") / "run"
    progress, reported, _, model = run_training(folder, tiny_config(**SELF_CRITICAL_SETTINGS),
                                                training_data(0))
    return folder, progress, reported, model


def test_self_critical_epochs_follow_cross_entropy(self_critical_run):
    folder, progress, reported, _ = self_critical_run
    assert reported == [1, 2, 3, 4]
    assert [logs["phase"] for logs in progress.history] == [CROSS_ENTROPY] * 2 + [SELF_CRITICAL] * 2
    assert all("reward" in logs and "loss" not in logs for logs in progress.history[2:])
    cider = [logs["val_cider"] for logs in progress.history[2:]]
    assert (progress.best, progress.best_epoch) == (max(cider), 3 + cider.index(max(cider)))
    saved_epochs = sorted(path.name for path in (folder / "epochs").glob("*.keras"))
    assert saved_epochs == [f"epoch_{n:03d}.keras" for n in reported]


@pytest.mark.parametrize("start", ["best", "last"])
def test_self_critical_training_starts_from_the_chosen_cross_entropy_epoch(tmp_path, monkeypatch,
                                                                           start):
    settings = tiny_config(monitor="val_loss", patience=2, epochs=12, self_critical_epochs=1,
                      self_critical_start=start)
    started_from = []
    first_epoch = SelfCriticalTrainer.epoch

    def epoch(trainer, *arguments):
        started_from.append(trainer.model.get_weights())
        return first_epoch(trainer, *arguments)

    monkeypatch.setattr(SelfCriticalTrainer, "epoch", epoch)
    progress, _, _, _ = run_training(tmp_path / "run", settings, training_data(1))
    losses = [logs["val_loss"] for logs in progress.history if logs["phase"] == CROSS_ENTROPY]
    best, last = 1 + losses.index(min(losses)), len(losses)
    assert best < last, "no cross-entropy epoch after the best: the test cannot tell them apart"
    start_epoch = best if start == "best" else last
    start_model = keras.saving.load_model(tmp_path / f"run/epochs/epoch_{start_epoch:03d}.keras")
    for mine, theirs in zip(started_from[0], start_model.get_weights(), strict=True):
        np.testing.assert_array_equal(mine, theirs)


def test_a_run_resumed_in_the_self_critical_phase_ends_as_the_uninterrupted_one(tmp_path,
                                                                               self_critical_run):
    settings = tiny_config(**SELF_CRITICAL_SETTINGS)
    _, whole, _, whole_model = self_critical_run
    run_training(tmp_path / "parts", dataclasses.replace(settings, self_critical_epochs=1),
                 training_data(0))
    resumed, reported, _, resumed_model = run_training(tmp_path / "parts", settings,
                                                       training_data(0))
    assert reported == [4]
    assert_same_run(resumed, resumed_model, whole, whole_model)
