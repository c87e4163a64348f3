"""Ensembles: the members' settings (each its own seed) and their publication as one model that
averages their next-word probabilities, with every member's models beside it."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import keras

from captioner.core.files import atomic_path
from captioner.core.params import TrainParams
from captioner.core.paths import ModelFolder
from captioner.model.network import build_ensemble
from captioner.training.run_state import RunFolder

# Seeds of an ensemble's members: train.seed, then steps of this size, far from neighbouring seeds
# (an ensemble of seed 42 shares no member with one of seed 43).
MEMBER_SEED_STEP = 1000


def member_configs(config: TrainParams) -> list[TrainParams]:
    """The settings of each captioner that `config` trains: its own, with the member's seed and
    decoder, for each of the `config.ensemble` members (a member is trained exactly as a lone
    model)."""
    return [dataclasses.replace(config, seed=config.seed + MEMBER_SEED_STEP * index, ensemble=1,
                                decoder=decoder)
            for index, decoder in enumerate(config.decoders)]


def load_ensemble(model_paths: list[Path]) -> keras.Model:
    """The ensemble of the captioners saved at `model_paths`, uncompiled (as it is saved)."""
    return build_ensemble([keras.saving.load_model(path, safe_mode=True) for path in model_paths])


def publish_ensemble(runs: list[RunFolder], models: Path,
                     save: Callable[[keras.Model, Path], None]) -> keras.Model:
    """Replaces the `models` folder at once by the ensemble of the runs' best models and, as its
    members, each run's models; returns the ensemble."""
    ensemble = load_ensemble([run.best_model for run in runs])
    with atomic_path(models) as folder:
        folder.mkdir()
        layout = ModelFolder(folder)
        save(ensemble, layout.model)
        for number, run in enumerate(runs, start=1):
            run.copy_to(layout.member(number).folder)
    return ensemble
