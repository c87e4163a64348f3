"""train.ensemble: several captioners trained in turn and published as one model averaging their
next-word probabilities, decoded by evaluate, the epoch table and predict like a single model."""

from __future__ import annotations

import csv
import sys

import keras
import numpy as np
import pytest

from captioner.core.files import read_json, read_jsonl
from captioner.core.params import DecodingSettings
from captioner.model.artifacts import load_model
from captioner.model.decoding import Decoder
from captioner.model.network import build_captioner, build_ensemble, decoding_models, ensemble_members
from tests.helpers.project import (
    FAST_PARAMS,
    dvc,
    kill_repro_after_epoch,
    run,
    set_params,
    stages_run,
    up_to_date,
)

EPOCHS = FAST_PARAMS["train"]["epochs"] + FAST_PARAMS["train"]["self_critical_epochs"]


def captioner(seed: int, units: int = 16, rnn: str = "gru") -> keras.Model:
    keras.utils.set_random_seed(seed)
    embeddings = np.random.default_rng(seed).normal(size=(12, 8)).astype(np.float32)
    return build_captioner(embeddings, 6, units, rnn, 0.0, True, image_init_state=True)


def test_an_ensemble_predicts_the_mean_of_its_members_probabilities():
    members = [captioner(1), captioner(2, units=24, rnn="lstm")]
    features = np.random.default_rng(0).normal(size=(3, 6)).astype(np.float32)
    tokens = np.array([[1, 4, 5, 6]] * 3, np.int32)
    alone = [member.predict([features, tokens], verbose=0) for member in members]
    ensemble = build_ensemble(members)
    assert ensemble_members(ensemble) == members
    np.testing.assert_allclose(ensemble.predict([features, tokens], verbose=0),
                               (alone[0] + alone[1]) / 2, rtol=1e-6)

    # One decoding step of the ensemble: the mean of each member's step, each with its own states.
    steps = [decoding_models(member) for member in members]
    encoded = [[np.asarray(value) for value in step.encode_image(features)] for step in steps]
    previous = np.full((3, 1), 1, np.int32)
    expected = np.mean([np.asarray(step.step([values[0], previous, *values[1:]])[0])
                        for step, values in zip(steps, encoded, strict=True)], axis=0)
    joined = decoding_models(ensemble)
    projected, *states = (np.asarray(value) for value in joined.encode_image(features))
    assert len(states) == 1 + 2  # the GRU's state, then the LSTM's two
    np.testing.assert_allclose(np.asarray(joined.step([projected, previous, *states])[0]), expected,
                               rtol=1e-5)


def test_an_ensemble_of_one_model_twice_captions_as_the_model_alone():
    model = captioner(3)
    twice = build_ensemble([model, captioner(3)])
    features = np.random.default_rng(1).normal(size=(5, 6)).astype(np.float32)
    for beam_size in (1, 3):
        settings = DecodingSettings(beam_size, 8, 0.5)
        assert (Decoder.from_model(twice).caption_ids(features, settings)
                == Decoder.from_model(model).caption_ids(features, settings))


@pytest.fixture(scope="module")
def ensemble_project(built_project, tmp_path_factory):
    project = built_project.clone(tmp_path_factory.mktemp("ensemble") / "project")
    set_params(project, {"train": {"ensemble": 2}})
    output = dvc("repro", cwd=project).stdout
    return project, output, built_project.path


@pytest.mark.slow
def test_an_ensemble_reruns_train_and_evaluate_and_is_then_up_to_date(ensemble_project):
    project, output, _ = ensemble_project
    assert stages_run(output) == ["train", "evaluate", "publish"]
    assert "train: member 2 (seed 1042): best epoch" in output
    assert "train: ensemble of 2: val_loss" in output
    assert up_to_date(project)
    assert not (project / "data/train_run").exists()


@pytest.mark.slow
def test_the_first_member_is_the_lone_model_of_the_same_seed(ensemble_project):
    project, _, lone = ensemble_project
    member_1, member_2 = (project / f"models/members/member_{n}" for n in (1, 2))
    assert (member_1 / "model.keras").read_bytes() == (lone / "models/model.keras").read_bytes()
    for number in range(1, EPOCHS + 1):
        name = f"epochs/epoch_{number:03d}.keras"
        assert (member_1 / name).read_bytes() == (lone / "models" / name).read_bytes()
        assert (member_2 / name).is_file()
    assert (member_2 / "model.keras").read_bytes() != (member_1 / "model.keras").read_bytes()
    ensemble = load_model(project / "models/model.keras").model
    assert [member.name for member in ensemble_members(ensemble)] == ["member_1", "member_2"]


def ensemble_outputs(project) -> dict[str, bytes]:
    """Every file train writes for an ensemble but the speed file (timings differ between runs)."""
    files = [*sorted((project / "models").rglob("*.keras")), *sorted((project / "models").rglob("*.json")),
             project / "data/records/train/metrics.json", project / "metrics/train/epochs.tsv"]
    return {str(path.relative_to(project)): path.read_bytes() for path in files}


@pytest.mark.slow
def test_an_ensemble_killed_in_its_second_member_resumes_and_ends_as_uninterrupted(
        ensemble_project, built_project, tmp_path):
    uninterrupted, _, _ = ensemble_project
    project = built_project.clone(tmp_path / "killed")
    set_params(project, {"train": {"ensemble": 2}})
    kill_repro_after_epoch(project, epochs_done=1, run="data/train_run/member_2")
    resumed = dvc("repro", "train", cwd=project).stdout
    assert "train: resuming after epoch" in resumed
    assert "member 1 (seed 42): epoch" not in resumed and "member 2 (seed 1042): epoch 1:" not in resumed
    assert ensemble_outputs(project) == ensemble_outputs(uninterrupted)
    assert f"models/members/member_2/epochs/epoch_{EPOCHS:03d}.keras" in ensemble_outputs(project)


@pytest.mark.slow
def test_every_members_epochs_are_logged_and_the_ensemble_scored(ensemble_project):
    project, _, lone = ensemble_project
    with open(project / "metrics/train/epochs.tsv") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    assert [(row["member"], int(row["epoch"])) for row in rows] == \
        [(member, epoch) for member in "12" for epoch in range(1, EPOCHS + 1)]
    with open(lone / "metrics/train/epochs.tsv") as handle:
        assert [row for row in rows if row["member"] == "1"] == \
            list(csv.DictReader(handle, delimiter="\t"))
    summary = read_json(project / "data/records/train/metrics.json")
    chosen_losses = []
    for member in "12":
        best_epoch = summary[f"member_{member}"]["best_epoch"]
        [chosen] = [row for row in rows if row["member"] == member and int(row["epoch"]) == best_epoch]
        chosen_losses.append(float(chosen["val_loss"]))
    assert set(summary["ensemble"]) == {"val_loss", "val_bleu4", "val_cider"}
    # Per word, -log of the mean probability is at most the mean of -log (Jensen): the ensemble of
    # the chosen epochs' models loses no more than its members on average.
    assert summary["ensemble"]["val_loss"] <= np.mean(chosen_losses) * (1 + 1e-6)
    assert len(read_json(project / "metrics/speed/train.json")["epoch_seconds"]) == 2 * EPOCHS


@pytest.mark.slow
def test_evaluate_the_epoch_table_and_predict_decode_the_ensemble(ensemble_project):
    project, _, _ = ensemble_project
    samples = (project / "data/evaluation/samples.md").read_text()
    # One section per sample image, each with member 1's epochs and, chosen, the ensemble.
    assert samples.count("| ensemble of 2 (chosen) |") == samples.count("## `") >= 1
    assert samples.count("(chosen)") == samples.count("## `")
    rows = read_jsonl(project / "data/evaluation/captions.jsonl")[:3]
    images = [f"data/raw/images/{row['image']}" for row in rows]
    result = run([sys.executable, "-m", "captioner", "predict", *images], project)
    assert result.stdout.splitlines() == [f"{image}\t{row['caption']}"
                                          for image, row in zip(images, rows, strict=True)]
    assert result.stderr == ""
