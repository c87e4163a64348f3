"""The published model as a DVC artifact, the way docs/sharing.md shares it: a version registered
and assigned `prod` with GTO's git tags, pushed to a bare git repository (the registry) and a local
DVC remote, then fetched by version and by stage into folders outside any project, where predict
captions as the source project does. Nothing here touches the network."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import pytest

from captioner.core.files import read_json, read_jsonl
from tests.helpers.project import commit_all, dvc, run

pytestmark = pytest.mark.slow  # real git, GTO and DVC commands on the built project
# GTO writes annotated tags: they need an author.
IDENTITY = {"GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "test@example.com",
            "GIT_COMMITTER_NAME": "test", "GIT_COMMITTER_EMAIL": "test@example.com"}


def digests(folder: Path) -> dict[str, str]:
    return {path.name: hashlib.md5(path.read_bytes()).hexdigest() for path in folder.iterdir()}


def test_a_registered_version_is_fetched_by_version_and_stage_and_captions_as_its_project(
        built_project, tmp_path):
    project = built_project.clone(tmp_path / "project")
    registry = tmp_path / "registry.git"
    run(["git", "init", "-q", "--bare", str(registry)], tmp_path)
    dvc("remote", "add", "-d", "storage", str(tmp_path / "remote"), cwd=project)
    commit_all(project, "a shared folder as the DVC remote")
    run(["git", "remote", "add", "origin", str(registry)], project)
    run(["git", "push", "-q", "origin", "HEAD"], project)
    dvc("push", cwd=project)
    run(["gto", "register", "captioner", "--version", "v1.0.0"], project, extra_env=IDENTITY)
    run(["gto", "assign", "captioner", "--version", "v1.0.0", "--stage", "prod"], project,
        extra_env=IDENTITY)
    run(["git", "push", "-q", "origin", "--tags"], project)

    elsewhere = tmp_path / "elsewhere"  # no project, no git repository
    elsewhere.mkdir()
    dvc("artifacts", "get", str(registry), "captioner", "--rev", "v1.0.0", "-o", "by_version",
        cwd=elsewhere)
    dvc("artifacts", "get", str(registry), "captioner", "--stage", "prod", "-o", "by_stage",
        cwd=elsewhere)
    published = digests(project / "published")
    assert set(published) == {"model.keras", "model.json", "card.json", "README.md"}
    assert digests(elsewhere / "by_version") == published == digests(elsewhere / "by_stage")

    row = read_jsonl(project / "data/evaluation/captions.jsonl")[0]
    image = project / "data/raw/images" / row["image"]
    code = {"PYTHONPATH": str(project)}  # the package, as a user who installed it has it
    fetched = run([sys.executable, "-m", "captioner", "predict", "--model", "by_stage",
                   str(image)], elsewhere, extra_env=code).stdout
    assert fetched == run([sys.executable, "-m", "captioner", "predict", str(image)],
                          project).stdout
    assert fetched == f"{image}\t{row['caption']}\n"
    card = read_json(elsewhere / "by_version/card.json")
    assert card["headline"]["bleu4"] == read_json(project / "metrics/eval.json")["bleu4"]
