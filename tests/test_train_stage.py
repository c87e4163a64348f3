"""The train stage's library call, in process: members trained in turn with their own seeds, a lone
model or an ensemble published into models/, every member's epochs logged, nothing written into
the project by a worker that is not the chief, and a run resumed only by the same settings and
inputs."""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import re
import typing

import pytest
import tensorflow as tf

from captioner.core import params, paths
from captioner.core.errors import PipelineError
from captioner.core.files import read_json
from captioner.core.paths import ModelFolder
from captioner.model.artifacts import load_model
from captioner.model.network import ensemble_members, reads_regions
from captioner.training import distribute
from captioner.training.ensemble import MEMBER_SEED_STEP, member_configs
from captioner.training.stage import members_of, run_fingerprint, train_stage
from stages import train as train_script
from tests.helpers.project import set_params
from tests.helpers.training import add_regions, train_project


@pytest.fixture
def project(tmp_path, monkeypatch):
    """The tiny train inputs of test_distribute, two cross-entropy epochs, as the working folder."""
    folder = train_project(tmp_path / "project", "none")
    set_params(folder, {"train": {"epochs": 2, "patience": 2, "save_every_epoch": False}})
    monkeypatch.chdir(folder)
    return folder


def config_with(**changes) -> params.TrainParams:
    return dataclasses.replace(params.load(params.TrainParams), **changes)


def train_with(config: params.TrainParams) -> None:
    """Runs the train stage's work with `config`, on the project's paths as the stage passes them."""
    train_stage(config, tf.distribute.get_strategy(), train_script.INPUTS, train_script.OUTPUTS)


def history_rows() -> list[dict[str, str]]:
    with open(paths.TRAIN_HISTORY, encoding="utf-8") as table:
        return list(csv.DictReader(table, delimiter="\t"))


def test_each_member_trains_as_a_lone_model_with_its_own_seed(tmp_path):
    config = config_with(ensemble=3, seed=7)
    members = member_configs(config)
    assert [member.seed for member in members] == [7, 7 + MEMBER_SEED_STEP, 7 + 2 * MEMBER_SEED_STEP]
    assert all(dataclasses.replace(member, seed=7) == dataclasses.replace(config, ensemble=1)
               for member in members)
    runs = members_of(config, tmp_path / "run")
    assert [(member.run.folder, member.prefix) for member in runs] == [
        (tmp_path / "run" / f"member_{number}", f"member_{number}/") for number in (1, 2, 3)]
    lone, = members_of(config_with(ensemble=1), tmp_path / "run")
    assert (lone.run.folder, lone.prefix, lone.heading) == (tmp_path / "run", "", "")


def test_an_ensemble_is_published_with_its_members_and_every_epoch_logged(project, capsys):
    train_with(config_with(ensemble=2))
    published = load_model(paths.BEST_MODEL)
    assert len(ensemble_members(published.model)) == 2
    for number in (1, 2):
        assert ModelFolder(paths.MODELS).member(number).model.is_file()
    assert [(row["member"], row["epoch"]) for row in history_rows()] == [
        ("1", "1"), ("1", "2"), ("2", "1"), ("2", "2")]
    summary = read_json(paths.TRAIN_SUMMARY)
    assert {"member_1", "member_2", "ensemble"} <= set(summary)
    assert set(summary["ensemble"]) == {"val_loss", "val_bleu4", "val_cider"}
    assert not paths.TRAIN_RUN.exists()
    output = capsys.readouterr().out
    assert "train: member 2 (seed 1000): epoch 2: " in output
    assert "train: ensemble of 2: val_loss " in output


def test_a_lone_model_is_published_as_it_is(project):
    train_with(config_with(ensemble=1))
    assert len(ensemble_members(load_model(paths.BEST_MODEL).model)) == 1
    assert not ModelFolder(paths.MODELS).members.exists()
    assert read_json(paths.TRAIN_SUMMARY)["best_epoch"] in (1, 2)
    assert len(history_rows()) == 2


def test_members_with_different_decoders_are_published_as_one_ensemble_reading_regions(project):
    add_regions(project)
    train_with(config_with(ensemble=2, decoder=["merge", "attention"]))
    published = load_model(paths.BEST_MODEL).model
    assert reads_regions(published)
    assert [reads_regions(member) for member in ensemble_members(published)] == [False, True]
    assert not reads_regions(load_model(ModelFolder(paths.MODELS).member(1).model).model)
    assert set(read_json(paths.TRAIN_SUMMARY)["ensemble"]) == {"val_loss", "val_bleu4", "val_cider"}


def test_an_attention_member_without_regions_is_refused_naming_the_folder(project):
    with pytest.raises(PipelineError, match=re.escape(
            "data/features: no grid.npy, the regions the attention decoder reads "
            "(set extract_features.grid: true)")):
        train_with(config_with(ensemble=1, decoder="attention"))


def test_a_decoder_list_needs_one_decoder_per_member():
    with pytest.raises(PipelineError, match=re.escape(
            "train.decoder: a list needs one decoder per member (ensemble 3), got 2")):
        params.parse(params.TrainParams, "train",
                     {**dataclasses.asdict(config_with()), "ensemble": 3,
                      "decoder": ["merge", "attention"]})


def test_a_worker_that_is_not_the_chief_writes_nothing_into_the_project(project, monkeypatch,
                                                                       capsys):
    monkeypatch.setattr(distribute, "is_chief", lambda strategy: False)
    before = sorted(path for path in project.rglob("*"))
    train_with(config_with(ensemble=2))
    assert sorted(path for path in project.rglob("*")) == before
    assert capsys.readouterr().out.endswith(
        "train: worker done after epoch 2; the chief wrote the outputs\n")


def another_value(config: params.TrainParams, name: str) -> params.TrainParams:
    """`config` with setting `name` changed to another valid value."""
    value = getattr(config, name)
    kind = typing.get_type_hints(params.TrainParams, include_extras=True)[name]
    if isinstance(value, bool):
        candidates = [not value]
    elif isinstance(value, int):
        candidates = [value + 1, value - 1]
    elif isinstance(value, float):
        candidates = [value + 0.1, value / 2]
    else:  # a Literal, maybe inside Annotated or first in a Union
        while typing.get_origin(kind) in (typing.Annotated, typing.Union):
            kind = typing.get_args(kind)[0]
        candidates = [choice for choice in typing.get_args(kind) if choice != value]
    for candidate in candidates:
        with contextlib.suppress(ValueError):
            return dataclasses.replace(config, **{name: candidate})
    raise AssertionError(f"no other valid value for train.{name}")


def test_every_setting_and_every_input_file_changes_the_run_fingerprint(project):
    config = config_with(ensemble=1)
    inputs = train_script.INPUTS
    first = run_fingerprint(config, inputs)
    assert run_fingerprint(config, inputs) == first
    for field in dataclasses.fields(params.TrainParams):
        assert run_fingerprint(another_value(config, field.name), inputs) != first, field.name
    for field in dataclasses.fields(inputs):
        path = getattr(inputs, field.name)
        changed = next(path.rglob("*.*")) if path.is_dir() else path
        saved = changed.read_bytes()
        changed.write_bytes(saved + b" ")
        assert run_fingerprint(config, inputs) != first, field.name
        changed.write_bytes(saved)
