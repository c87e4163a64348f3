"""params.yaml sections are validated before any work starts, naming the offending key."""

from __future__ import annotations

import pytest
import yaml

from captioner import params
from captioner.errors import PipelineError


def load_with(tmp_path, section, changes):
    document = yaml.safe_load(open("params.yaml"))
    document[section].update(changes)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(document))
    return params.load(params.SECTIONS[section], path)


@pytest.mark.parametrize(("section", "changes", "message"), [
    ("evaluate", {"beam_size": 0}, "evaluate.beam_size: must be >= 1"),
    ("tokenize", {"min_count": -1}, "tokenize.min_count: must be >= 1"),
    ("extract_features", {"backbone": "vgg16"}, "extract_features.backbone: must be one of"),
    ("train", {"epochs": "ten"}, "train.epochs must be int"),
    ("train", {"rnn": "transformer"}, "train.rnn"),
    ("embed", {"dimension": 300}, "unknown key embed.dimension"),
    ("download", {"images_sha256": "abc"}, "download.images_sha256"),
    ("train", {"dropout": True}, "train.dropout must be float"),
])
def test_bad_params_are_rejected_with_the_key_named(tmp_path, section, changes, message):
    with pytest.raises(PipelineError, match=message):
        load_with(tmp_path, section, changes)


def test_integers_are_accepted_for_floats(tmp_path):
    assert load_with(tmp_path, "train", {"learning_rate": 1}).learning_rate == 1.0
