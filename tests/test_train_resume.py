"""Training killed mid-run resumes from its last finished epoch and ends as an uninterrupted run;
two clean runs of the whole pipeline give the same bytes."""

from __future__ import annotations

import pytest
import yaml

from tests.helpers.project import (
    FAST_PARAMS,
    copy_project,
    dvc,
    kill_repro_after_epoch,
    locked_stages,
    set_params,
)

pytestmark = pytest.mark.slow  # every test here runs real DVC commands

EPOCHS = 4
# Everything the train stage writes; the speed file holds timings, which no two runs share.
TRAIN_OUTPUTS = ["models/model.keras", "models/model.json", "data/records/train/metrics.json",
                 "metrics/train/epochs.tsv",
                 *[f"models/epochs/epoch_{epoch:03d}.keras" for epoch in range(1, EPOCHS + 1)]]


def outputs(project) -> dict[str, bytes]:
    return {name: (project / name).read_bytes() for name in TRAIN_OUTPUTS}




@pytest.fixture
def uninterrupted(built_project, tmp_path):
    project = built_project.clone(tmp_path / "uninterrupted")
    set_params(project, {"train": {"epochs": EPOCHS, "patience": EPOCHS}})
    dvc("repro", "train", cwd=project)
    return outputs(project)


def test_killed_training_resumes_and_ends_as_an_uninterrupted_run(built_project, tmp_path,
                                                                  uninterrupted):
    project = built_project.clone(tmp_path / "killed")
    set_params(project, {"train": {"epochs": EPOCHS, "patience": EPOCHS}})
    kill_repro_after_epoch(project, epochs_done=2)
    assert not (project / "models").exists()

    resumed = dvc("repro", "train", cwd=project).stdout
    assert "train: resuming after epoch" in resumed
    assert "train: epoch 1:" not in resumed
    assert outputs(project) == uninterrupted
    assert not (project / "data/train_run").exists()


def test_a_changed_run_does_not_resume_from_another_runs_checkpoint(built_project, tmp_path):
    project = built_project.clone(tmp_path / "changed")
    set_params(project, {"train": {"epochs": EPOCHS, "patience": EPOCHS}})
    kill_repro_after_epoch(project, epochs_done=1)
    set_params(project, {"train": {"learning_rate": 0.002}})
    rerun = dvc("repro", "train", cwd=project).stdout
    assert "resuming" not in rerun
    assert "train: epoch 1:" in rerun


@pytest.mark.long
def test_two_clean_runs_give_identical_outputs(built_project, tmp_path):
    """A fresh copy with an empty DVC cache, run from the same mirror, matches the session's run."""
    served = yaml.safe_load((built_project.path / "params.yaml").read_text())["download"]
    project = copy_project(tmp_path / "second", {**FAST_PARAMS, "download": served})
    dvc("repro", cwd=project)
    first, second = (locked_stages(path) for path in (built_project.path, project))
    for stage in first:
        hashes = [{out["path"]: out["md5"] for out in lock[stage]["outs"]
                   if not out["path"].startswith("metrics/speed/")} for lock in (first, second)]
        assert hashes[0] == hashes[1], stage
    assert (project / "metrics/eval.json").read_bytes() == \
        (built_project.path / "metrics/eval.json").read_bytes()
