"""Typed, validated sections of params.yaml: one dataclass per stage.

params.yaml is the one place where values live: every key is required there, none has a default here.

Each stage loads only its own section with `load(Section)`, but for `pretrained`, which reads the
keys of embed and extract_features that name files. Unknown keys, wrong types and
out-of-range values are rejected before any work starts, with the key named.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from captioner.core.errors import PipelineError
from captioner.core.paths import PARAMS_FILE

BACKBONES = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2", "resnet50")
# tokenize.format: `auto` or one of the modules of captioner.captions.formats.
CAPTION_FORMATS = ("auto", "flickr8k", "flickr30k", "karpathy", "coco", "csv")
# train.distribute: one process on one device, all local devices, or several machines (TF_CONFIG).
DISTRIBUTE_MODES = ("none", "mirrored", "multi_worker")


@dataclasses.dataclass(frozen=True)
class DownloadParams:
    images_url: str
    text_url: str
    images_sha256: str
    text_sha256: str
    max_unpacked_mb: int

    def check(self) -> None:
        _require(bool(self.images_url.strip()), "images_url", "must not be empty")
        _require(bool(self.text_url.strip()), "text_url", "must not be empty")
        for key in ("images_sha256", "text_sha256"):
            _require_sha256(key, getattr(self, key))
        _require(self.max_unpacked_mb > 0, "max_unpacked_mb", "must be > 0")


@dataclasses.dataclass(frozen=True)
class TokenizeParams:
    """`val_images` and `test_images` size a split carved from train when the captions files do
    not give it: a count (a whole number, cut to `max_carved_fraction` of the training images)
    or a fraction (0 < x < 1) of the training images."""

    format: str
    min_count: int
    max_length: int
    val_images: float
    test_images: float
    max_carved_fraction: float
    seed: int

    def check(self) -> None:
        _require(self.format in CAPTION_FORMATS, "format", f"must be one of {', '.join(CAPTION_FORMATS)}")
        _require(self.min_count >= 1, "min_count", "must be >= 1")
        _require(self.max_length >= 3, "max_length", "must be >= 3 (start, a word, end)")
        for key in ("val_images", "test_images"):
            value = getattr(self, key)
            _require(0 < value < 1 or (value >= 1 and value.is_integer()), key,
                     "must be a count (a whole number >= 1) or a fraction (0 < x < 1)")
        _require(0 < self.max_carved_fraction < 1, "max_carved_fraction", "must be in (0, 1)")


@dataclasses.dataclass(frozen=True)
class EmbedParams:
    """`source` and `sha256` are the pretrained stage's (it brings the vectors into
    data/pretrained/vectors, which embed reads); the rest are embed's."""

    source: str
    sha256: str
    dim: int
    epoch: int
    minn: int
    maxn: int
    seed: int

    def check(self) -> None:
        _require(self.dim >= 1, "dim", "must be >= 1")
        _require(self.epoch >= 1, "epoch", "must be >= 1")
        _require(0 <= self.minn <= self.maxn, "minn", "must satisfy 0 <= minn <= maxn")
        _require(bool(self.source), "source", "must be 'train' or a URL/path to vectors")
        _require_sha256("sha256", self.sha256)


@dataclasses.dataclass(frozen=True)
class ExtractFeaturesParams:
    """`weights` ('imagenet', 'none' or a weights file's path or URL) and `weights_sha256` are the
    pretrained stage's: it brings the file into data/pretrained/weights, which extract_features
    reads."""

    backbone: str
    weights: str
    weights_sha256: str
    batch_size: int
    decode_threads: int
    max_bad_fraction: float

    def check(self) -> None:
        _require(self.backbone in BACKBONES, "backbone", f"must be one of {', '.join(BACKBONES)}")
        _require(self.batch_size >= 1, "batch_size", "must be >= 1")
        _require(self.decode_threads >= 1, "decode_threads", "must be >= 1")
        _require(0.0 <= self.max_bad_fraction <= 1.0, "max_bad_fraction", "must be in [0, 1]")
        _require_sha256("weights_sha256", self.weights_sha256)


@dataclasses.dataclass(frozen=True)
class TrainParams:
    units: int
    rnn: str
    dropout: float
    train_embedding: bool
    image_init_state: bool
    optimizer: str
    learning_rate: float
    learning_rate_decay: float
    precision: str
    distribute: str
    batch_size: int
    epochs: int
    patience: int
    monitor: str
    val_bleu_images: int
    save_every_epoch: bool
    self_critical_epochs: int
    self_critical_start: str
    self_critical_monitor: str
    self_critical_learning_rate: float
    self_critical_samples: int
    self_critical_batch_images: int
    self_critical_max_words: int
    ensemble: int
    seed: int

    def check(self) -> None:
        _require(self.units >= 1, "units", "must be >= 1")
        _require(self.rnn in ("gru", "lstm"), "rnn", "must be 'gru' or 'lstm'")
        _require(0.0 <= self.dropout < 1.0, "dropout", "must be in [0, 1)")
        _require(self.optimizer in ("adam", "rmsprop", "sgd"), "optimizer",
                 "must be 'adam', 'rmsprop' or 'sgd'")
        _require(self.learning_rate > 0, "learning_rate", "must be > 0")
        _require(0 < self.learning_rate_decay <= 1, "learning_rate_decay", "must be in (0, 1]")
        _require(self.precision in ("float32", "mixed_bfloat16"), "precision",
                 "must be 'float32' or 'mixed_bfloat16'")
        _require(self.distribute in DISTRIBUTE_MODES, "distribute",
                 f"must be one of {', '.join(DISTRIBUTE_MODES)}")
        _require(self.batch_size >= 1, "batch_size", "must be >= 1")
        _require(self.epochs >= 1, "epochs", "must be >= 1")
        _require(self.patience >= 0, "patience", "must be >= 0")
        _require(self.monitor in ("val_bleu4", "val_cider", "val_loss"), "monitor",
                 "must be 'val_bleu4', 'val_cider' or 'val_loss'")
        _require(self.val_bleu_images >= 1, "val_bleu_images", "must be >= 1")
        _require(self.self_critical_epochs >= 0, "self_critical_epochs", "must be >= 0")
        _require(self.self_critical_start in ("best", "last"), "self_critical_start",
                 "must be 'best' or 'last' (the cross-entropy epoch self-critical training starts from)")
        _require(self.self_critical_monitor in ("val_bleu4", "val_cider"), "self_critical_monitor",
                 "must be 'val_bleu4' or 'val_cider' (self-critical training does not lower the loss)")
        _require(self.self_critical_learning_rate > 0, "self_critical_learning_rate", "must be > 0")
        _require(self.self_critical_samples >= 2, "self_critical_samples",
                 "must be >= 2 (each sample's baseline is the mean reward of the others)")
        _require(self.self_critical_batch_images >= 1, "self_critical_batch_images", "must be >= 1")
        _require(self.self_critical_max_words >= 1, "self_critical_max_words", "must be >= 1")
        _require(self.ensemble >= 1, "ensemble", "must be >= 1 (the number of models trained)")
        _require(self.self_critical_epochs == 0 or self.distribute == "none", "self_critical_epochs",
                 "self-critical training runs on one device: set it to 0 under train.distribute "
                 f"{self.distribute!r}")


@dataclasses.dataclass(frozen=True)
class EvaluateParams:
    """`sample_images` picks the test images captioned by every epoch's model: a count (the first
    ones in test-split order) or a list of test image ids."""

    beam_size: int
    max_length: int
    length_penalty: float
    batch_size: int
    report_images: int
    sample_images: int | list

    def check(self) -> None:
        _require(self.beam_size >= 1, "beam_size", "must be >= 1")
        _require(self.max_length >= 1, "max_length", "must be >= 1")
        _require(self.length_penalty >= 0, "length_penalty", "must be >= 0")
        _require(self.batch_size >= 1, "batch_size", "must be >= 1")
        _require(self.report_images >= 0, "report_images", "must be >= 0")
        samples = self.sample_images
        if isinstance(samples, int):
            _require(samples >= 1, "sample_images", "must be a count >= 1 or a list of image ids")
        else:
            _require(bool(samples) and all(isinstance(image, str) for image in samples)
                     and len(set(samples)) == len(samples), "sample_images",
                     "must be a count >= 1 or a non-empty list of distinct image ids (strings)")


SECTIONS = {
    "download": DownloadParams,
    "tokenize": TokenizeParams,
    "embed": EmbedParams,
    "extract_features": ExtractFeaturesParams,
    "train": TrainParams,
    "evaluate": EvaluateParams,
}
Section = TypeVar("Section")


def _require(condition: bool, key: str, message: str) -> None:
    if not condition:
        raise ValueError(f"{key}: {message}")


def _require_sha256(key: str, value: str) -> None:
    if value and (len(value) != 64 or any(c not in "0123456789abcdef" for c in value)):
        raise ValueError(f"{key}: expected 64 lowercase hex digits or empty, got {value!r}")


def _type_matches(value: Any, annotation: Any) -> bool:
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(annotation, types.UnionType):
        return any(_type_matches(value, arg) for arg in typing.get_args(annotation))
    return isinstance(value, annotation)


def _type_name(annotation: Any) -> str:
    """`int`, `float`, ... or `int | list` for a union."""
    return getattr(annotation, "__name__", None) or str(annotation)


def parse(section_class: type[Section], name: str, raw: Any) -> Section:
    """Builds a section from its raw mapping, naming the offending key on any problem."""
    if not isinstance(raw, dict):
        raise PipelineError(f"{PARAMS_FILE}: section '{name}' must be a mapping")
    hints = typing.get_type_hints(section_class)
    fields = {f.name: f for f in dataclasses.fields(section_class)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise PipelineError(
            f"{PARAMS_FILE}: unknown key {name}.{unknown[0]} (known: {', '.join(fields)})"
        )
    for key, value in raw.items():
        if not _type_matches(value, hints[key]):
            raise PipelineError(
                f"{PARAMS_FILE}: {name}.{key} must be {_type_name(hints[key])}, got {value!r}"
            )
    missing = [key for key in fields if key not in raw]
    if missing:
        raise PipelineError(f"{PARAMS_FILE}: missing key {name}.{missing[0]}")
    section = section_class(**{k: (float(v) if hints[k] is float else v) for k, v in raw.items()})
    try:
        section.check()
    except ValueError as error:
        raise PipelineError(f"{PARAMS_FILE}: {name}.{error}") from None
    return section


def load(section_class: type[Section], path: Path = PARAMS_FILE) -> Section:
    """Reads params.yaml and returns the validated section of the given class."""
    name = next(key for key, value in SECTIONS.items() if value is section_class)
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as error:
        raise PipelineError(f"{path}: cannot read params: {error}") from None
    if name not in document:
        raise PipelineError(f"{path}: missing section '{name}'")
    return parse(section_class, name, document[name])
