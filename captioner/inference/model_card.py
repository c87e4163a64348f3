"""The model card published beside a model (captioner.publishing writes it): read back for the
decoding settings its scores were measured with, the service's page and `GET /model`."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from captioner.core.errors import PipelineError
from captioner.core.files import read_json
from captioner.core.params import DecodingSettings

CARD_JSON = "card.json"
HASH_CHUNK = 1 << 20


def read_card(model_path: Path, md5: str | None = None) -> dict[str, Any] | None:
    """The card published beside a model (in its folder), or None when there is none (the train
    stage's models/) or no model; refused when it describes another model (another name or MD5: a
    model replaced by hand). `md5` is the model's, when already known."""
    path = model_path.parent / CARD_JSON
    if not (path.is_file() and model_path.is_file()):
        return None
    try:
        card = read_json(path)
    except (OSError, ValueError) as error:
        raise PipelineError(f"{path}: not a model card: {error}") from None
    try:
        described, text = card["model"], card["headline"]["text"]
        name, described_md5 = described["file"], described["md5"]
    except (KeyError, TypeError) as error:
        raise PipelineError(f"{path}: not a model card: no {error}") from None
    if not isinstance(text, str):
        raise PipelineError(f"{path}: not a model card: its headline has no text")
    if (name, described_md5) != (model_path.name, md5 or file_md5(model_path)):
        raise PipelineError(f"{path}: describes {name} with MD5 {described_md5}, not "
                            f"{model_path}; publish it again (`dvc repro publish`) or remove "
                            "the card")
    return card


def decoding_of(card: Mapping[str, Any], source: Path) -> DecodingSettings:
    """The decoding settings the card's scores were measured with."""
    try:
        return DecodingSettings(**card["model"]["decoding"])
    except (KeyError, TypeError) as error:
        raise PipelineError(f"{source}: no decoding settings: {error!r}") from None


def file_md5(path: Path) -> str:
    """The file's MD5, the hash DVC records for a file output."""
    digest = hashlib.md5()
    with path.open("rb") as file:
        while chunk := file.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
