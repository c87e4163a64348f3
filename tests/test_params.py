"""params.yaml sections are validated before any work starts, naming the offending key."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import yaml

from captioner.core import params
from captioner.core.errors import PipelineError

ROOT = Path(__file__).resolve().parents[1]


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
    ("train", {"distribute": "horovod"},
     "train.distribute: must be one of none, mirrored, multi_worker"),
    ("embed", {"dimension": 300}, "unknown key embed.dimension"),
    ("download", {"images_sha256": "abc"}, "download.images_sha256"),
    ("train", {"dropout": True}, "train.dropout must be float"),
])
def test_bad_params_are_rejected_with_the_key_named(tmp_path, section, changes, message):
    with pytest.raises(PipelineError, match=message):
        load_with(tmp_path, section, changes)


@pytest.mark.parametrize(("stage", "changes", "message"), [
    ("download", {"max_unpacked_mb": 0}, "download.max_unpacked_mb: must be > 0"),
    ("tokenize", {"min_count": -1}, "tokenize.min_count: must be >= 1"),
    ("embed", {"dimension": 300}, "unknown key embed.dimension"),
    ("extract_features", {"backbone": "vgg16"}, "extract_features.backbone: must be one of"),
    ("evaluate", {"beam_size": 0}, "evaluate.beam_size: must be >= 1"),
    ("evaluate", {"report_images": "all"}, "evaluate.report_images must be int"),
])
def test_stages_reject_bad_params_before_any_work(tmp_path, monkeypatch, stage, changes, message):
    # The folder holds no inputs: a stage that looked at anything else first would fail otherwise.
    document = yaml.safe_load((ROOT / "params.yaml").read_text())
    document[stage].update(changes)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(document))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(PipelineError, match=message):
        importlib.import_module(f"stages.{stage}").main()
    assert [path.name for path in tmp_path.iterdir()] == ["params.yaml"]


def test_integers_are_accepted_for_floats(tmp_path):
    assert load_with(tmp_path, "train", {"learning_rate": 1}).learning_rate == 1.0
