"""The download stage end to end: run as a process on the sample archives and on a bad source, and
under DVC, which must never change a user's folder of images."""

from __future__ import annotations

import hashlib
import shutil
import sys

import pytest

from captioner.core.files import read_json
from captioner.core.paths import DOWNLOAD_RECORD
from tests.helpers.archives import files_under, fingerprint
from tests.helpers.downloading import run_download_stage, write_user_folder
from tests.helpers.project import SAMPLE, copy_project, dvc, params_only_project, run, set_params


@pytest.mark.skipif(not SAMPLE.exists(), reason=f"sample archives not found at {SAMPLE}")
def test_stage_unpacks_the_sample_archives(tmp_path):
    project = params_only_project(tmp_path / "project", {"download": {
        "images_url": str(SAMPLE / "Flickr8k_Dataset.zip"),
        "text_url": (SAMPLE / "Flickr8k_text.zip").as_uri()}})
    result = run_download_stage(project)
    assert result.returncode == 0, result.stderr
    images = list((project / "data" / "raw" / "images").iterdir())
    assert len(images) == 200 and all(p.suffix == ".jpg" for p in images)
    text = project / "data" / "raw" / "text"
    for name in ("Flickr8k.token.txt", "Flickr_8k.trainImages.txt", "Flickr_8k.devImages.txt",
                 "Flickr_8k.testImages.txt"):
        assert (text / name).is_file()
    metrics = read_json(project / DOWNLOAD_RECORD)
    assert metrics["images"] == 200
    for kind, archive in (("text", "Flickr8k_text.zip"), ("images", "Flickr8k_Dataset.zip")):
        expected = hashlib.sha256((SAMPLE / archive).read_bytes()).hexdigest()
        assert metrics["archives"][kind]["sha256"] == expected


def test_stage_reports_a_bad_source_in_one_line(tmp_path):
    absent = tmp_path / "absent.zip"
    project = params_only_project(tmp_path / "project", {"download": {
        "images_url": str(absent), "text_url": str(absent)}})
    result = run_download_stage(project)
    assert result.returncode == 1
    assert result.stderr == f"error: {absent}: no such file\n"


@pytest.mark.slow
def test_dvc_never_changes_the_users_folder(tmp_path):
    """The stage clones a folder's images: with every DVC cache type, reruns, a relinking checkout
    and garbage collection leave the user's files exactly as they were (per-file symlinks or hard
    links would not: DVC's hardlink cache takes the user's inode and makes it read-only)."""
    folder = write_user_folder(tmp_path / "coco")
    captions = tmp_path / "captions_train2014.json"
    captions.write_text('{"annotations": []}')
    project = copy_project(tmp_path / "project", {"download": {
        "images_url": str(folder), "text_url": str(captions)}})
    original = {**fingerprint(folder), "captions": captions.read_bytes()}
    for megabytes, cache_type in ((100, "hardlink"), (101, "symlink"), (102, "reflink,copy")):
        dvc("config", "cache.type", cache_type, cwd=project)
        shutil.rmtree(project / ".dvc/cache", ignore_errors=True)  # so that DVC commits anew
        set_params(project, {"download": {"max_unpacked_mb": megabytes}})
        dvc("repro", "download", cwd=project)
        assert files_under(project / "data/raw/images").keys() == {
            "train2014/a.jpg", "val2014/c.jpeg", "val2014/deeper/b.PNG"}
    dvc("checkout", "--relink", "download", cwd=project)
    dvc("gc", "--workspace", "--force", cwd=project)
    partial = project / "data/raw/.partial/left-by-a-killed-run"
    partial.parent.mkdir()
    partial.write_text("unfinished")
    set_params(project, {"download": {"images_url": str(tmp_path / "absent")}})
    failed = run([sys.executable, "-m", "dvc", "repro", "download"], project, check=False)
    assert failed.returncode != 0 and "absent: no such file" in failed.stderr
    assert not (project / "data/raw/images").exists()  # DVC removed its outputs, not the partials
    assert partial.read_text() == "unfinished"
    assert {**fingerprint(folder), "captions": captions.read_bytes()} == original
