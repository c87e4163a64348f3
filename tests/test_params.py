"""params.yaml sections are validated before any work starts: every bad key at once, one line each
naming the key, its value and what is allowed; params.schema.json is the schema of the same rules."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from captioner.core import params
from captioner.core.errors import PipelineError
from tests.helpers.bounded import one_error, run_bounded

ROOT = Path(__file__).resolve().parents[1]


def load_with(tmp_path, section, changes):
    document = yaml.safe_load(open("params.yaml"))
    document[section].update(changes)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(document))
    return params.load(params.SECTIONS[section], path)


@pytest.mark.parametrize(("section", "changes", "message"), [
    ("evaluate", {"beam_size": 0}, "evaluate.beam_size: must be >= 1, got 0"),
    ("tokenize", {"min_count": -1}, "tokenize.min_count: must be >= 1, got -1"),
    ("extract_features", {"backbone": "vgg16"},
     "extract_features.backbone: must be 'efficientnet_lite0', 'efficientnet_lite1', "
     "'efficientnet_lite2' or 'resnet50', got 'vgg16'"),
    ("train", {"epochs": "ten"}, "train.epochs: must be an integer, got 'ten'"),
    ("train", {"epochs": 2.0}, "train.epochs: must be an integer, got 2.0"),
    ("train", {"rnn": "transformer"}, "train.rnn: must be 'gru' or 'lstm', got 'transformer'"),
    ("train", {"distribute": "horovod"},
     "train.distribute: must be 'none', 'mirrored' or 'multi_worker', got 'horovod'"),
    ("embed", {"dimension": 300}, "unknown key embed.dimension (known: source, sha256, dim, epoch, "
                                  "minn, maxn, seed)"),
    ("embed", {"minn": 7}, "embed.minn: must be <= maxn (6), got 7"),
    ("download", {"images_sha256": "abc"},
     "download.images_sha256: must be 64 lowercase hex digits, or empty (unchecked), got 'abc'"),
    ("train", {"dropout": True}, "train.dropout: must be a number, got True"),
    ("train", {"decoder": "transformer"}, "train.decoder: must be merge, attention, or a list of "
                                         "these, one per ensemble member, got 'transformer'"),
    ("train", {"decoder": ["merge"]}, "train.decoder: a list needs one decoder per member "
                                      "(ensemble 2), got 1"),
    ("tokenize", {"val_images": 2.5}, "tokenize.val_images: must be a count (a whole number >= 1) "
                                      "or a fraction (0 < x < 1), got 2.5"),
    ("evaluate", {"sample_images": ["a.jpg", "a.jpg"]}, "evaluate.sample_images: must be a count "
     ">= 1 or a non-empty list of distinct image ids (strings), got ['a.jpg', 'a.jpg']"),
])
def test_bad_params_are_rejected_with_the_key_its_value_and_what_is_allowed(tmp_path, section,
                                                                            changes, message):
    with pytest.raises(PipelineError) as raised:
        load_with(tmp_path, section, changes)
    assert str(raised.value) == f"params.yaml: {message}"


def test_every_bad_key_is_reported_at_once_one_line_each(tmp_path):
    with pytest.raises(PipelineError) as raised:
        load_with(tmp_path, "train", {"units": 0, "rnn": "cnn", "epochs": "ten", "bogus": 1})
    assert sorted(str(raised.value).splitlines()) == sorted([
        "params.yaml: unknown key train.bogus (known: decoder, attention_units, units, rnn, "
        "dropout, train_embedding, "
        "image_init_state, optimizer, learning_rate, learning_rate_decay, label_smoothing, precision, "
        "distribute, batch_size, epochs, patience, monitor, val_bleu_images, save_every_epoch, "
        "self_critical_epochs, self_critical_start, self_critical_monitor, "
        "self_critical_learning_rate, self_critical_samples, self_critical_batch_images, "
        "self_critical_max_words, ensemble, mirrored_views, seed)",
        "params.yaml: train.units: must be >= 1, got 0",
        "params.yaml: train.rnn: must be 'gru' or 'lstm', got 'cnn'",
        "params.yaml: train.epochs: must be an integer, got 'ten'",
    ])


def test_a_stage_prints_every_bad_key_as_an_error_line_and_no_traceback(tmp_path):
    document = yaml.safe_load((ROOT / "params.yaml").read_text())
    document["download"].update(max_unpacked_mb=0, images_sha256="abc")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(document))
    result = subprocess.run([sys.executable, "-m", "stages.download"], cwd=tmp_path,
                            env={"PYTHONPATH": str(ROOT)}, capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "error: params.yaml: download.images_sha256: must be 64 lowercase hex digits, or empty "
        "(unchecked), got 'abc'",
        "error: params.yaml: download.max_unpacked_mb: must be >= 1, got 0"]


def test_the_committed_schema_is_the_params_models_schema():
    assert json.loads((ROOT / "params.schema.json").read_text()) == params.schema()
    assert (ROOT / "params.yaml").read_text().startswith(
        "# yaml-language-server: $schema=params.schema.json\n")


@pytest.mark.parametrize(("stage", "changes", "message"), [
    ("download", {"max_unpacked_mb": 0}, "download.max_unpacked_mb: must be >= 1"),
    ("tokenize", {"min_count": -1}, "tokenize.min_count: must be >= 1"),
    ("embed", {"dimension": 300}, "unknown key embed.dimension"),
    ("extract_features", {"backbone": "vgg16"}, "extract_features.backbone: must be 'efficientnet"),
    ("evaluate", {"beam_size": 0}, "evaluate.beam_size: must be >= 1"),
    ("evaluate", {"report_images": "all"}, "evaluate.report_images: must be an integer"),
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


# Loads the train section of the params file given, as every stage does first.
LOAD = """
import sys
from pathlib import Path
from captioner.core import params
from captioner.core.errors import run_stage
run_stage(lambda: params.load(params.TrainParams, Path(sys.argv[1])))
"""
LAUGHS = 'a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n' + "".join(
    f"{chr(98 + level)}: &{chr(98 + level)} [{', '.join([f'*{chr(97 + level)}'] * 9)}]\n"
    for level in range(8))


@pytest.mark.parametrize(("text", "problem"), [
    (LAUGHS, "not valid YAML: aliases (*name) are not allowed (line 2, column 8)"),
    ("a: " + "[" * 50_000 + "]" * 50_000 + "\n", "not valid YAML: nested over 32 levels (line 1, column 35)"),
    (b"train: {}\n# \xff\n", "not UTF-8 text (byte 12)"),
], ids=["nested_aliases", "deep", "not_utf8"])
def test_a_hostile_params_file_is_one_line_within_bounds(tmp_path, text, problem):
    path = tmp_path / "params.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    assert one_error(run_bounded(["-c", LOAD, str(path)], seconds=20)) == f"error: {path}: {problem}"


def test_a_huge_integer_where_a_number_goes_is_refused(tmp_path):
    with pytest.raises(PipelineError, match=r"train.learning_rate: must be a number, got 1000"):
        load_with(tmp_path, "train", {"learning_rate": 10**400})
