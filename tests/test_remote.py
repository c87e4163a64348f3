"""Data and models shared through a DVC remote: a fresh clone that only ran `dvc pull` is up to
date, `dvc repro` runs no stage, and predict captions with the pulled model; nothing is retrained."""

from __future__ import annotations

import sys

import pytest

from captioner.core.files import read_jsonl
from tests.helpers.project import commit_all, dvc, run, stages_run, up_to_date

pytestmark = pytest.mark.slow  # every test here runs real DVC commands


def test_a_pulled_clone_is_up_to_date_and_predicts(built_project, tmp_path):
    project = built_project.clone(tmp_path / "project")
    dvc("remote", "add", "-d", "storage", str(tmp_path / "remote"), cwd=project)
    commit_all(project, "a shared folder as the DVC remote")
    dvc("push", cwd=project)

    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(project), str(clone)], tmp_path)
    assert (clone / "dvc.lock").is_file() and not (clone / ".dvc/cache").exists()
    dvc("pull", cwd=clone)
    assert up_to_date(clone)
    output = dvc("repro", cwd=clone).stdout
    assert stages_run(output) == []
    assert "Data and pipelines are up to date." in output

    row = read_jsonl(clone / "data/evaluation/captions.jsonl")[0]
    image = f"data/raw/images/{row['image']}"
    predicted = run([sys.executable, "-m", "captioner", "predict", image], clone)
    assert predicted.stdout.splitlines() == [f"{image}\t{row['caption']}"]
    assert run(["git", "status", "--porcelain"], clone).stdout == ""
