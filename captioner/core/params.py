"""Typed, validated sections of params.yaml: one pydantic dataclass per stage.

params.yaml is the one place where values live: every key is required there, none has a default here.

Each stage loads only its own section with `load(Section)`, but for `pretrained`, which reads the
keys of embed and extract_features that name files, and `publish`, whose model card reports the
sections of every stage but download. Unknown keys, wrong types (strict: no `"3"` for
3, no `true` for 1; an integer is a valid float), out-of-range values and broken cross-key rules are
all reported before any work starts, one line per key with its value and what is allowed.
`schema()` is the JSON Schema of the whole file (params.schema.json, which editors read).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, get_args

from pydantic import AfterValidator, ConfigDict, Field, TypeAdapter, ValidationError, model_validator
from pydantic.dataclasses import dataclass

from captioner.core.errors import PipelineError
from captioner.core.paths import PARAMS_FILE
from captioner.core.yaml_file import read_yaml

Backbone = Literal["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2", "resnet50"]
# tokenize.format: `auto` or one of the modules of captioner.captions.formats.
CaptionFormat = Literal["auto", "flickr8k", "flickr30k", "karpathy", "coco", "csv"]
# train.distribute: one process on one device, all local devices, or several machines (TF_CONFIG).
DistributeMode = Literal["none", "mirrored", "multi_worker"]
# train.decoder: the pooled image vector merged with the words, or that and attention over regions.
Decoder = Literal["merge", "attention"]
BACKBONES, CAPTION_FORMATS, DISTRIBUTE_MODES = (get_args(kind) for kind in
                                                (Backbone, CaptionFormat, DistributeMode))

SECTION_CONFIG = ConfigDict(strict=True, extra="forbid")
Sha256 = Annotated[str, Field(pattern=r"^([0-9a-f]{64})?$",
                              description="64 lowercase hex digits, or empty (unchecked)")]
Text = Annotated[str, Field(pattern=r"\S", description="a non-blank string")]
Positive = Annotated[int, Field(ge=1)]
Fraction = Annotated[float, Field(gt=0, lt=1)]


def _count_or_fraction(value: float) -> float:
    if not (0 < value < 1 or (value >= 1 and value.is_integer())):
        raise ValueError("a count (a whole number >= 1) or a fraction (0 < x < 1)")
    return value


def _distinct(images: list[str]) -> list[str]:
    if len(set(images)) != len(images):
        raise ValueError("distinct image ids")
    return images


CountOrFraction = Annotated[float, AfterValidator(_count_or_fraction)]


@dataclass(frozen=True, config=SECTION_CONFIG)
class DownloadParams:
    images_url: Text
    text_url: Text
    images_sha256: Sha256
    text_sha256: Sha256
    max_unpacked_mb: Positive


@dataclass(frozen=True, config=SECTION_CONFIG)
class TokenizeParams:
    """`val_images` and `test_images` size a split carved from train when the captions files do
    not give it: a count (a whole number, cut to `max_carved_fraction` of the training images)
    or a fraction (0 < x < 1) of the training images."""

    format: CaptionFormat
    min_count: Positive
    max_length: Annotated[int, Field(ge=3, description="start, a word, end")]
    val_images: CountOrFraction
    test_images: CountOrFraction
    max_carved_fraction: Fraction
    seed: int


@dataclass(frozen=True, config=SECTION_CONFIG)
class EmbedParams:
    """`source` and `sha256` are the pretrained stage's (it brings the vectors into
    data/pretrained/vectors, which embed reads); the rest are embed's."""

    source: Annotated[str, Field(pattern=r"\S", description="'train' or a URL/path to vectors")]
    sha256: Sha256
    dim: Positive
    epoch: Positive
    minn: Annotated[int, Field(ge=0)]
    maxn: int
    seed: int

    @model_validator(mode="after")
    def _ngrams(self) -> EmbedParams:
        if self.minn > self.maxn:
            raise ValueError(f"minn: must be <= maxn ({self.maxn}), got {self.minn}")
        return self


@dataclass(frozen=True, config=SECTION_CONFIG)
class ExtractFeaturesParams:
    """`weights` ('imagenet', 'none' or a weights file's path or URL) and `weights_sha256` are the
    pretrained stage's: it brings the file into data/pretrained/weights, which extract_features
    reads."""

    backbone: Backbone
    weights: Text
    weights_sha256: Sha256
    batch_size: Positive
    decode_threads: Positive
    max_bad_fraction: Annotated[float, Field(ge=0, le=1)]
    grid: Annotated[bool, Field(description="the attention decoder reads the regions")]
    mirrored: Annotated[bool, Field(description="train.mirrored_views reads the mirrored photos")]


@dataclass(frozen=True, config=SECTION_CONFIG)
class TrainParams:
    """`decoder` is every member's, or a list of one per member of the ensemble."""

    decoder: Annotated[Decoder | Annotated[list[Decoder], Field(min_length=1)], Field(
        description="merge, attention, or a list of these, one per ensemble member")]
    attention_units: Positive
    units: Positive
    rnn: Literal["gru", "lstm"]
    dropout: Annotated[float, Field(ge=0, lt=1)]
    train_embedding: bool
    image_init_state: bool
    optimizer: Literal["adam", "rmsprop", "sgd"]
    learning_rate: Annotated[float, Field(gt=0)]
    learning_rate_decay: Annotated[float, Field(gt=0, le=1)]
    label_smoothing: Annotated[float, Field(ge=0, lt=1, description=(
        "the share of each target word's probability spread over the whole vocabulary"))]
    precision: Literal["float32", "mixed_bfloat16"]
    distribute: DistributeMode
    batch_size: Positive
    epochs: Positive
    patience: Annotated[int, Field(ge=0)]
    monitor: Literal["val_bleu4", "val_cider", "val_loss"]
    val_bleu_images: Positive
    save_every_epoch: bool
    self_critical_epochs: Annotated[int, Field(ge=0)]
    self_critical_start: Annotated[Literal["best", "last"], Field(
        description="the cross-entropy epoch self-critical training starts from")]
    self_critical_monitor: Annotated[Literal["val_bleu4", "val_cider"], Field(
        description="self-critical training does not lower the loss")]
    self_critical_learning_rate: Annotated[float, Field(gt=0)]
    self_critical_samples: Annotated[int, Field(
        ge=2, description="each sample's baseline is the mean reward of the others")]
    self_critical_batch_images: Positive
    self_critical_max_words: Positive
    ensemble: Annotated[int, Field(ge=1, description="the number of models trained")]
    mirrored_views: Annotated[bool, Field(description=(
        "each cross-entropy epoch, each training image is seen as it is or mirrored, drawn"))]
    seed: int

    @model_validator(mode="after")
    def _one_decoder_per_member(self) -> TrainParams:
        if isinstance(self.decoder, list) and len(self.decoder) != self.ensemble:
            raise ValueError(f"decoder: a list needs one decoder per member (ensemble "
                             f"{self.ensemble}), got {len(self.decoder)}")
        return self

    @property
    def decoders(self) -> list[str]:
        """Each member's decoder."""
        return self.decoder if isinstance(self.decoder, list) else [self.decoder] * self.ensemble


# Images decoded together where no evaluate params say (outside a project); it changes only speed.
DECODE_BATCH_SIZE = 64


@dataclasses.dataclass(frozen=True)
class DecodingSettings:
    """How captions are searched for: beams kept, most words, and the length penalty (beams rank
    by log-probability over length ** length_penalty; 0 ranks by plain log-probability). Beam size 1
    is greedy decoding. Evaluate, predict, the service and the export decode with the evaluate
    params' settings, validation during training greedily. A length penalty left out is 0."""

    beam_size: int
    max_length: int
    length_penalty: float = 0.0

    def describe(self) -> str:
        """The settings in words, as the epoch table's legend gives them."""
        search = "greedy" if self.beam_size == 1 else f"beam size {self.beam_size}"
        return f"{search}, length penalty {self.length_penalty:g}, at most {self.max_length} words"


@dataclass(frozen=True, config=SECTION_CONFIG)
class EvaluateParams:
    """`sample_images` picks the test images captioned by every epoch's model: a count (the first
    ones in test-split order) or a list of test image ids."""

    beam_size: Positive
    max_length: Positive
    length_penalty: Annotated[float, Field(ge=0)]
    batch_size: Positive
    report_images: Annotated[int, Field(ge=0)]
    sample_images: Annotated[
        Positive | Annotated[list[str], Field(min_length=1), AfterValidator(_distinct)],
        Field(description="a count >= 1 or a non-empty list of distinct image ids (strings)")]
    retrieval_k: Annotated[list[Positive], Field(min_length=1), AfterValidator(_distinct),
                           Field(description="the retrieval baseline's candidate numbers of "
                                             "neighbours, distinct; validation CIDEr picks one")]

    @property
    def decoding(self) -> DecodingSettings:
        """The settings every caption of the evaluate stage (and predict's) is decoded with."""
        return DecodingSettings(self.beam_size, self.max_length, self.length_penalty)


SECTIONS = {
    "download": DownloadParams,
    "tokenize": TokenizeParams,
    "embed": EmbedParams,
    "extract_features": ExtractFeaturesParams,
    "train": TrainParams,
    "evaluate": EvaluateParams,
}
Section = TypeVar("Section")
# What each kind of pydantic error says about a value, in the words of these messages.
ALLOWED = {"greater_than_equal": "must be >= {ge}", "greater_than": "must be > {gt}",
           "less_than": "must be < {lt}", "less_than_equal": "must be <= {le}",
           "literal_error": "must be {expected}", "int_type": "must be an integer",
           "float_type": "must be a number", "bool_type": "must be true or false",
           "string_type": "must be a string", "list_type": "must be a list",
           "too_short": "must not be empty"}


def _line(name: str, key: str, errors: list[dict[str, Any]], description: str | None) -> str:
    """One line for everything wrong with one key."""
    error = errors[0]
    where = f"{PARAMS_FILE}: {name}.{key}"
    if error["type"] == "missing":
        return f"{PARAMS_FILE}: missing key {name}.{key}"
    if error["type"] == "value_error":
        return f"{where}: must be {error['ctx']['error']}, got {error['input']!r}"
    if len(errors) > 1 or error["type"] == "string_pattern_mismatch":  # a union's branches, a pattern
        allowed = f"must be {description}"
    else:
        allowed = ALLOWED.get(error["type"], error["msg"]).format(**error.get("ctx", {}))
    hint = f" ({description})" if description and not allowed.endswith(description) else ""
    return f"{where}: {allowed}, got {error['input']!r}{hint}"


def _lines(section_class: type, name: str, error: ValidationError) -> list[str]:
    fields = {field.name: field for field in dataclasses.fields(section_class)}
    by_key: dict[str, list[dict[str, Any]]] = {}
    lines = []
    for item in error.errors():
        if not item["loc"]:  # a cross-key rule, stated as "key: problem"
            lines.append(f"{PARAMS_FILE}: {name}.{item['ctx']['error']}")
        elif item["type"] == "unexpected_keyword_argument":
            lines.append(f"{PARAMS_FILE}: unknown key {name}.{item['loc'][0]} "
                         f"(known: {', '.join(fields)})")
        else:
            by_key.setdefault(str(item["loc"][0]), []).append(item)
    for key, errors in by_key.items():
        lines.append(_line(name, key, errors, section_class.__pydantic_fields__[key].description))
    return lines


def parse(section_class: type[Section], name: str, raw: Any) -> Section:
    """Builds a section from its raw mapping; every problem becomes one line of the error."""
    if not isinstance(raw, dict):
        raise PipelineError(f"{PARAMS_FILE}: section '{name}' must be a mapping")
    try:
        return section_class(**{str(key): value for key, value in raw.items()})
    except ValidationError as error:
        raise PipelineError("\n".join(_lines(section_class, name, error))) from None


def load(section_class: type[Section], path: Path = PARAMS_FILE) -> Section:
    """Reads params.yaml and returns the validated section of the given class."""
    name = next(key for key, value in SECTIONS.items() if value is section_class)
    document = read_yaml(path)
    if name not in document:
        raise PipelineError(f"{path}: missing section '{name}'")
    return parse(section_class, name, document[name])


@dataclass(frozen=True, config=SECTION_CONFIG)
class ParamsFile:
    """params.yaml as a whole: one section per stage."""

    download: DownloadParams
    tokenize: TokenizeParams
    embed: EmbedParams
    extract_features: ExtractFeaturesParams
    train: TrainParams
    evaluate: EvaluateParams


def schema() -> dict[str, Any]:
    """The JSON Schema of params.yaml."""
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            **TypeAdapter(ParamsFile).json_schema()}
