"""The pretrained stage's work: sources by URL or path placed under fixed names, each checked
cheaply on later runs, and replaced only when their content changes; a local file outside the
project's pretrained/ folder refused in one line before anything is read or placed."""

from __future__ import annotations

import gzip
import os
import shutil
import sys

import numpy as np
import pytest

from captioner.acquire import pinning
from captioner.acquire.fetching import DEFAULT_POLICY, Cap, HttpPolicy
from captioner.acquire.pinning import bring
from captioner.core.errors import PipelineError
from captioner.core.files import read_json, write_json
from captioner.core.paths import PRETRAINED_SOURCES
from captioner.core.placed import MANIFEST, VECTORS, WEIGHTS, read_placed
from captioner.core.sources import MB, sha256_of
from captioner.inputs.embeddings import matrix_from_file
from tests.helpers.http_server import serve_directory
from tests.helpers.project import ROOT, params_only_project, run
from tests.helpers.vectors import random_vectors, train_bin, write_vec

VOCABULARY = ["<pad>", "<unk>", "<start>", "<end>", "dog", "cat", "café", "unseen"]
FAST = HttpPolicy(attempts=1, backoff_s=0.0, connect_timeout_s=2.0, read_timeout_s=5.0)


@pytest.fixture(autouse=True)
def in_project_folder(tmp_path, monkeypatch):
    """The pretrained folders are relative paths, as in the project, whose pretrained/ folder holds
    the local sources."""
    (tmp_path / "project" / PRETRAINED_SOURCES).mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "project")


def bring_here(kind, source, sha256, tmp_path, policy=DEFAULT_POLICY):
    """`bring` as the stage calls it, from the project folder: local sources must be in pretrained/."""
    return bring(kind, source, sha256, tmp_path / "scratch", PRETRAINED_SOURCES, policy)


def in_pretrained(tmp_path, name):
    """The absolute path of `name` in the project's pretrained/ folder."""
    return tmp_path / "project" / PRETRAINED_SOURCES / name


def expected_rows(path):
    """What each vocabulary word's row must be: the .vec values, or fastText's own vector."""
    if ".bin" in path.name:
        model = train_bin(path)
        return {word: model.get_word_vector(word) for word in VOCABULARY[4:]}, 3 / 4
    vectors = random_vectors(["dog", "horse", "café"], 5, seed=1)
    write_vec(path, vectors)
    return {word: vectors[word] for word in ("dog", "café")}, 2 / 4


@pytest.mark.parametrize(("name", "placed"), [
    ("wiki.vec", "vectors.vec"), ("wiki.vec.gz", "vectors.vec.gz"),
    ("wiki-news-300d-1M.vec.zip", "vectors.zip"), ("cc.bin", "vectors.bin"),
    ("cc.en.300.bin.gz", "vectors.bin"),
])
def test_each_format_by_url_is_placed_and_read(tmp_path, name, placed):
    rows, coverage = expected_rows(tmp_path / "served" / name)
    with serve_directory(tmp_path / "served") as server:
        record, action = bring_here(VECTORS, server.url_for(name), "", tmp_path, FAST)
    assert action == "placed"
    assert sorted(path.name for path in VECTORS.folder.iterdir()) == sorted([MANIFEST, placed])
    assert record["sha256"] == sha256_of(tmp_path / "served" / name)
    dim = 8 if ".bin" in name else 5
    matrix, found = matrix_from_file(read_placed(VECTORS).path, VOCABULARY, seed=0, dim=dim)
    assert found == pytest.approx(coverage)
    for word, row in rows.items():
        np.testing.assert_allclose(matrix[VOCABULARY.index(word)], row, atol=1e-6)


@pytest.mark.parametrize("style", ["file_url", "absolute", "relative", "link_in_pretrained"])
def test_local_sources_in_pretrained_by_path_or_file_url(tmp_path, style):
    path = write_vec(in_pretrained(tmp_path, "mine.vec"), random_vectors(["dog"], 3, seed=0))
    in_pretrained(tmp_path, "current.vec").symlink_to("mine.vec")
    source = {"file_url": path.as_uri(), "absolute": str(path), "relative": "pretrained/mine.vec",
              "link_in_pretrained": "pretrained/current.vec"}[style]
    record, action = bring_here(VECTORS, source, sha256_of(path), tmp_path)
    assert (action, record["source"]) == ("placed", source)
    assert (VECTORS.folder / "vectors.vec").read_bytes() == path.read_bytes()


def test_sha256_mismatch_is_one_clear_error_and_places_nothing(tmp_path):
    path = write_vec(tmp_path / "served/wiki.vec", random_vectors(["dog"], 3, seed=0))
    wrong = "0" * 64
    with serve_directory(tmp_path / "served") as server, pytest.raises(PipelineError) as caught:
        bring_here(VECTORS, server.url_for("wiki.vec"), wrong, tmp_path, FAST)
    assert str(caught.value) == (f"{server.url_for('wiki.vec')}: sha256 mismatch: expected {wrong}, "
                                 f"got {sha256_of(path)}")
    assert not VECTORS.folder.exists()


def test_a_pinned_copy_already_placed_is_kept_without_touching_the_source(tmp_path):
    served = tmp_path / "served"
    write_vec(served / "a.vec", random_vectors(["dog"], 3, seed=0))
    with serve_directory(served) as server:
        url = server.url_for("a.vec")
        first, action = bring_here(VECTORS, url, "", tmp_path, FAST)
        assert action == "placed" and len(server.requests) == 1
        assert bring_here(VECTORS, url, first["sha256"], tmp_path, FAST) == (first, "kept")
        assert len(server.requests) == 1
    # The server is gone: a pinned copy is still kept; an unpinned source must be fetched.
    assert bring_here(VECTORS, url, first["sha256"], tmp_path, FAST)[1] == "kept"
    with pytest.raises(PipelineError, match="unreachable"):
        bring_here(VECTORS, url, "", tmp_path, FAST)


def test_an_unpinned_source_is_fetched_again_and_placed_only_when_its_content_changed(tmp_path):
    path = write_vec(in_pretrained(tmp_path, "mine.vec"), random_vectors(["dog"], 3, seed=0))
    bring_here(VECTORS, str(path), "", tmp_path)
    placed = os.stat(VECTORS.folder / "vectors.vec")
    renamed = shutil.copy(path, in_pretrained(tmp_path, "renamed.vec"))
    assert bring_here(VECTORS, str(renamed), "", tmp_path)[1] == "same content"
    assert os.stat(VECTORS.folder / "vectors.vec").st_ino == placed.st_ino

    write_vec(path, random_vectors(["dog"], 3, seed=1))
    record, action = bring_here(VECTORS, str(path), "", tmp_path)
    assert (action, record["sha256"]) == ("placed", sha256_of(path))
    assert (VECTORS.folder / "vectors.vec").read_bytes() == path.read_bytes()
    assert read_json(VECTORS.manifest_copy)["sha256"] == sha256_of(path)


def test_a_pinned_source_not_placed_is_fetched_and_checked(tmp_path):
    path = write_vec(in_pretrained(tmp_path, "mine.vec"), random_vectors(["dog"], 3, seed=0))
    pinned = sha256_of(path)
    bring_here(VECTORS, str(path), pinned, tmp_path)
    (VECTORS.folder / "vectors.vec").write_text("1 3\ndog 0 0 0\n")  # changed by hand
    assert bring_here(VECTORS, str(path), pinned, tmp_path)[1] == "placed"
    assert (VECTORS.folder / "vectors.vec").read_bytes() == path.read_bytes()

    shutil.rmtree(VECTORS.folder)
    write_vec(path, random_vectors(["dog"], 3, seed=1))
    with pytest.raises(PipelineError) as caught:
        bring_here(VECTORS, str(path), pinned, tmp_path)
    assert str(caught.value) == f"{path}: sha256 mismatch: expected {pinned}, got {sha256_of(path)}"
    assert not VECTORS.folder.exists()


def test_a_builtin_source_leaves_only_its_manifest(tmp_path):
    weights = in_pretrained(tmp_path, "resnet50.weights.h5")
    weights.write_bytes(b"not really weights")
    assert bring_here(WEIGHTS, str(weights), "", tmp_path)[0]["placed_bytes"] == 18
    assert read_placed(WEIGHTS).path.name == "weights.weights.h5"
    assert bring_here(WEIGHTS, "imagenet", "", tmp_path) == ({"source": "imagenet"}, "builtin")
    assert [path.name for path in WEIGHTS.folder.iterdir()] == [MANIFEST]
    assert read_placed(WEIGHTS).builtin == "imagenet"


@pytest.mark.parametrize(("kind", "source", "sha256", "message"), [
    (VECTORS, "glove.6B.300d.txt", "",
     "embed.source: glove.6B.300d.txt: expected train or a .vec.gz, .vec, .bin.gz, .bin, .zip file"),
    (VECTORS, "train", "a" * 64, "embed.source: 'train' is not a file; leave embed.sha256 empty"),
    (WEIGHTS, "pretrained/missing.h5", "", "pretrained/missing.h5: no such file"),
])
def test_bad_sources_are_named(tmp_path, kind, source, sha256, message):
    with pytest.raises(PipelineError) as caught:
        bring_here(kind, source, sha256, tmp_path)
    assert str(caught.value) == message


def test_a_builtin_source_is_read_without_its_folder_and_a_file_needs_it(tmp_path):
    # A fresh clone run with `dvc exp run --allow-missing` has the manifests from git, no folders.
    bring_here(VECTORS, "train", "", tmp_path)
    shutil.rmtree(VECTORS.folder)
    assert read_placed(VECTORS).builtin == "train"

    path = write_vec(in_pretrained(tmp_path, "mine.vec"), random_vectors(["dog"], 3, seed=0))
    bring_here(VECTORS, str(path), "", tmp_path)
    assert read_json(VECTORS.manifest_copy) == read_json(VECTORS.folder / MANIFEST)
    shutil.rmtree(VECTORS.folder)
    with pytest.raises(PipelineError) as caught:
        read_placed(VECTORS)
    assert str(caught.value) == (
        f"data/pretrained/vectors: missing, and data/pretrained/vectors.json names a file "
        f"(sha256 {sha256_of(path)}); run `dvc pull` or `dvc repro -f pretrained`")


def test_a_folder_that_disagrees_with_its_manifest_in_git_is_refused(tmp_path):
    weights = in_pretrained(tmp_path, "resnet50.weights.h5")
    weights.write_bytes(b"not really weights")
    bring_here(WEIGHTS, str(weights), "", tmp_path)
    write_json(WEIGHTS.manifest_copy, {"file": "weights.weights.h5", "sha256": "0" * 64})
    with pytest.raises(PipelineError, match=r"^data/pretrained/weights: holds other content than "
                                            r"data/pretrained/weights.json names; run `dvc checkout`"):
        read_placed(WEIGHTS)


def test_a_gz_that_unpacks_past_the_pretrained_cap_is_refused_and_places_nothing(tmp_path,
                                                                                monkeypatch):
    path = in_pretrained(tmp_path, "cc.bin.gz")
    with gzip.open(path, "wb") as handle:
        handle.write(bytes(3 * MB))
    monkeypatch.setattr(pinning, "PRETRAINED_CAP", Cap(MB, "a test's 1 MB cap"))
    with pytest.raises(PipelineError) as caught:
        bring_here(VECTORS, str(path), "", tmp_path)
    assert str(caught.value) == f"{path}: unpacks to more than 1 MB, the cap set by a test's 1 MB cap"
    assert not VECTORS.folder.exists()


def outside_line(setting, given, argument, name):
    """The one line refusing a local source outside pretrained/."""
    return (f"{setting}: {given} is outside pretrained/, where DVC cannot see it change; run "
            f"`dvc import-url {argument} pretrained/` (or copy it there and `dvc add` it) and set "
            f"{setting}: pretrained/{name}")


def files_under(folder):
    """Every file under `folder`, with its bytes."""
    return {path: path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


@pytest.mark.parametrize("style", ["absolute", "file_url"])
def test_a_local_file_outside_pretrained_is_refused_in_one_line_touching_nothing(tmp_path, style):
    outside = write_vec(tmp_path / "outside/wiki.vec", random_vectors(["dog"], 3, seed=0))
    source = {"absolute": str(outside), "file_url": outside.as_uri()}[style]
    line = outside_line("embed.source", source, outside, "wiki.vec")
    with pytest.raises(PipelineError) as caught:
        bring_here(VECTORS, source, "", tmp_path)
    assert str(caught.value) == line
    assert not (tmp_path / "project/data").exists() and not (tmp_path / "scratch").exists()

    # Placed from pretrained/, then the same content named outside and pinned: still refused, not kept.
    bring_here(VECTORS, str(shutil.copy(outside, in_pretrained(tmp_path, "wiki.vec"))), "", tmp_path)
    placed = files_under(tmp_path / "project/data")
    with pytest.raises(PipelineError) as caught:
        bring_here(VECTORS, source, sha256_of(outside), tmp_path)
    assert str(caught.value) == line
    assert files_under(tmp_path / "project/data") == placed
    assert not (tmp_path / "scratch").exists()


@pytest.mark.parametrize(("kind", "source", "where"), [
    (VECTORS, "../x.vec", "x.vec"),
    (VECTORS, "pretrained/../x.vec", "project/x.vec"),
    (WEIGHTS, "../lite0.pth", "lite0.pth"),
])
def test_a_relative_path_outside_pretrained_is_refused_with_a_command_run_from_the_project(
        tmp_path, kind, source, where):
    (tmp_path / where).write_bytes(b"not read")
    with pytest.raises(PipelineError) as caught:
        bring_here(kind, source, "", tmp_path)
    assert str(caught.value) == outside_line(kind.setting, source, source, source.rsplit("/")[-1])
    assert (tmp_path / "project" / source).resolve() == (tmp_path / where).resolve()
    assert not (tmp_path / "project/data").exists()


@pytest.mark.parametrize("link", ["file", "folder"])
def test_a_link_in_pretrained_to_a_file_outside_is_refused(tmp_path, link):
    outside = write_vec(tmp_path / "outside/wiki.vec", random_vectors(["dog"], 3, seed=0))
    if link == "file":
        in_pretrained(tmp_path, "wiki.vec").symlink_to(outside)
        source = "pretrained/wiki.vec"
    else:
        in_pretrained(tmp_path, "elsewhere").symlink_to(outside.parent, target_is_directory=True)
        source = "pretrained/elsewhere/wiki.vec"
    with pytest.raises(PipelineError) as caught:
        bring_here(VECTORS, source, "", tmp_path)
    real = outside.resolve()
    assert str(caught.value) == (
        f"embed.source: {source} resolves to {real}, outside pretrained/, where DVC cannot see it "
        f"change; replace the link: run `dvc import-url {real} pretrained/` (or copy it there and "
        f"`dvc add` it) and set embed.source: pretrained/wiki.vec")
    assert not (tmp_path / "project/data").exists()


def test_the_stage_checks_both_sources_before_bringing_either(tmp_path):
    project = params_only_project(tmp_path / "stage", {
        "embed": {"source": "pretrained/mine.vec"},
        "extract_features": {"weights": str(tmp_path / "lite0.pth")}})
    write_vec(project / "pretrained/mine.vec", random_vectors(["dog"], 3, seed=0))
    (tmp_path / "lite0.pth").write_bytes(b"not read")
    result = run([sys.executable, "-m", "stages.pretrained"], project, check=False,
                 extra_env={"PYTHONPATH": str(ROOT)})
    assert (result.returncode, result.stdout) == (1, "")
    line = outside_line("extract_features.weights", tmp_path / "lite0.pth", tmp_path / "lite0.pth",
                        "lite0.pth")
    assert result.stderr == f"error: {line}\n"
    assert not (project / "data").exists()
