"""Saving and loading a trained model with what it needs beside it: its vocabulary and backbone."""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras

from captioner.core.errors import PipelineError
from captioner.core.files import atomic_path, read_json, write_json
from captioner.model.network import MergeLayers, ensemble_members


@dataclass
class CaptionModel:
    """A trained captioner with the vocabulary and image backbone it was trained with."""

    model: keras.Model
    vocabulary: list[str]
    backbone: dict[str, Any]


def model_info_path(model_path: Path) -> Path:
    """The JSON file stored beside a model: its vocabulary and backbone."""
    return model_path.with_suffix(".json")


def save_model(model: keras.Model, path: Path, vocabulary: list[str], backbone: dict) -> None:
    """Saves the model and its vocabulary/backbone description, each atomically.

    The same weights always give the same bytes, so DVC sees a retrained identical model as unchanged.
    """
    write_json(model_info_path(path), {"vocabulary": vocabulary, "backbone": backbone})
    with atomic_path(path) as temporary:
        model.save(temporary)
        _without_save_times(temporary)


def _without_save_times(archive: Path) -> None:
    """Makes a .keras zip depend on the model alone.

    Keras writes the save date, zip member times and Python object ids (`shared_object_id`, which
    only link the places one object is used) into it; these are replaced by fixed values.
    """
    with zipfile.ZipFile(archive) as source:
        members = [(info, source.read(info)) for info in source.infolist()]
    with zipfile.ZipFile(archive, "w") as target:
        for info, data in members:
            if info.filename == "metadata.json":
                metadata = json.loads(data)
                metadata.pop("date_saved", None)
                data = json.dumps(metadata).encode()
            elif info.filename == "config.json":
                data = json.dumps(_renumber_shared_objects(json.loads(data), {})).encode()
            stamped = zipfile.ZipInfo(info.filename, date_time=(1980, 1, 1, 0, 0, 0))
            stamped.compress_type = info.compress_type
            target.writestr(stamped, data)


def _renumber_shared_objects(config: Any, numbers: dict[int, int]) -> Any:
    """`config` with each shared_object_id replaced by 1, 2, ... in order of first appearance."""
    if isinstance(config, list):
        return [_renumber_shared_objects(item, numbers) for item in config]
    if not isinstance(config, dict):
        return config
    renumbered = {key: _renumber_shared_objects(value, numbers) for key, value in config.items()}
    if "shared_object_id" in config:
        renumbered["shared_object_id"] = numbers.setdefault(config["shared_object_id"],
                                                            len(numbers) + 1)
    return renumbered


def load_model(path: Path) -> CaptionModel:
    """Loads a model saved by `save_model` (Keras safe mode: no arbitrary code)."""
    info_path = model_info_path(path)
    if not path.is_file():
        raise PipelineError(f"{path}: no such model (run `dvc repro train` first)")
    if not info_path.is_file():
        raise PipelineError(f"{info_path}: missing; it holds the model's vocabulary and backbone")
    try:
        model = keras.saving.load_model(path, safe_mode=True)
    except (OSError, ValueError) as error:
        raise PipelineError(f"{path}: cannot load the model: {error}") from None
    vocabulary, backbone = _read_model_info(info_path)
    try:
        vocab_size = MergeLayers.of(ensemble_members(model)[0]).next_word.units
    except ValueError as error:
        raise PipelineError(f"{path}: not a caption model of this project: {error}") from None
    if len(vocabulary) != vocab_size:
        raise PipelineError(f"{info_path}: vocabulary has {len(vocabulary)} words but "
                            f"the model predicts {vocab_size}")
    return CaptionModel(model, vocabulary, backbone)


def _read_model_info(info_path: Path) -> tuple[list[str], dict[str, Any]]:
    """The vocabulary and backbone description stored beside a model, checked for shape."""
    try:
        info = read_json(info_path)
        vocabulary, backbone = info["vocabulary"], info["backbone"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise PipelineError(f"{info_path}: not a model description: {error!r}") from None
    if not (isinstance(vocabulary, list) and all(isinstance(word, str) for word in vocabulary)):
        raise PipelineError(f"{info_path}: 'vocabulary' must be a list of words")
    if not (isinstance(backbone, dict)
            and all(isinstance(backbone.get(key), str) for key in ("backbone", "weights"))):
        raise PipelineError(f"{info_path}: 'backbone' must name a backbone and its weights")
    return vocabulary, backbone
