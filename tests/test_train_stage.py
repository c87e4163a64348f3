"""The train stage's library call, in process: members trained in turn with their own seeds, a lone
model or an ensemble published into models/, every member's epochs logged, and nothing written into
the project by a worker that is not the chief."""

from __future__ import annotations

import csv
import dataclasses

import pytest
import tensorflow as tf

from captioner.core import params, paths
from captioner.core.files import read_json
from captioner.model.artifacts import load_model
from captioner.model.network import ensemble_members
from captioner.training import distribute
from captioner.training.ensemble import MEMBER_SEED_STEP, member_configs, members_of, train_ensemble
from tests.helpers.project import set_params
from tests.helpers.training import train_project


@pytest.fixture
def project(tmp_path, monkeypatch):
    """The tiny train inputs of test_distribute, two cross-entropy epochs, as the working folder."""
    folder = train_project(tmp_path / "project", "none")
    set_params(folder, {"train": {"epochs": 2, "patience": 2, "save_every_epoch": False}})
    monkeypatch.chdir(folder)
    return folder


def config_with(**changes) -> params.TrainParams:
    return dataclasses.replace(params.load(params.TrainParams), **changes)


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
    train_ensemble(config_with(ensemble=2), tf.distribute.get_strategy())
    published = load_model(paths.BEST_MODEL)
    assert len(ensemble_members(published.model)) == 2
    for number in (1, 2):
        assert (paths.member_folder(number) / "model.keras").is_file()
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
    train_ensemble(config_with(ensemble=1), tf.distribute.get_strategy())
    assert len(ensemble_members(load_model(paths.BEST_MODEL).model)) == 1
    assert not paths.MEMBERS.exists()
    assert read_json(paths.TRAIN_SUMMARY)["best_epoch"] in (1, 2)
    assert len(history_rows()) == 2


def test_a_worker_that_is_not_the_chief_writes_nothing_into_the_project(project, monkeypatch,
                                                                       capsys):
    monkeypatch.setattr(distribute, "is_chief", lambda strategy: False)
    before = sorted(path for path in project.rglob("*"))
    train_ensemble(config_with(ensemble=2), tf.distribute.get_strategy())
    assert sorted(path for path in project.rglob("*")) == before
    assert capsys.readouterr().out.endswith(
        "train: worker done after epoch 2; the chief wrote the outputs\n")
