"""The download of a dataset: both sources brought into raw/images and raw/text, as archives over
HTTP or on disk, a folder of images or a single captions file, with metrics that record each source;
a failed download keeps the previous outputs."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from captioner.core.errors import PipelineError
from captioner.core.paths import RAW_TEXT_SOURCE
from tests.helpers.archives import files_under, fingerprint, make_tar, make_zip
from tests.helpers.downloading import TOKENS, download, download_settings, write_user_folder
from tests.helpers.http_server import serve_directory

# --- archives ------------------------------------------------------------------------------

def test_download_dataset_brings_both_archives(tmp_path):
    images = make_zip(tmp_path / "img.zip", {"Flicker8k_Dataset/1.jpg": b"1",
                                              "Flicker8k_Dataset/2.jpg": b"22"})
    text = make_zip(tmp_path / "txt.zip", {"Flickr8k_text/Flickr8k.token.txt": TOKENS,
                                            "Flickr8k_text/Flickr_8k.trainImages.txt": b"1.jpg\n"})
    with serve_directory(tmp_path) as server:
        settings = download_settings(server.url_for("img.zip"), text)
        metrics = download(settings, tmp_path / "raw")
    assert files_under(tmp_path / "raw" / "images") == {"1.jpg": b"1", "2.jpg": b"22"}
    assert metrics["text_files"] == ["Flickr8k.token.txt", "Flickr_8k.trainImages.txt"]
    assert (tmp_path / "raw" / "text" / "Flickr8k.token.txt").read_bytes() == TOKENS
    assert metrics["images"] == 2 and metrics["unpacked_bytes"] == 3 + len(TOKENS) + 6
    assert metrics["archives"]["images"]["sha256"] == hashlib.sha256(
        images.read_bytes()).hexdigest()
    assert metrics["archives"]["text"]["bytes"] == text.stat().st_size
    assert sorted(p.name for p in (tmp_path / "raw").iterdir()) == ["images", "text",
                                                                     RAW_TEXT_SOURCE.name]


def test_metrics_record_each_source_exactly_as_given(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("mirror").mkdir()
    make_zip(Path("mirror/img.zip"), {"a/1.jpg": b"1"})
    make_zip(Path("mirror/txt.zip"), {"captions.txt": TOKENS})
    with serve_directory(tmp_path / "mirror") as server:
        given = {"images": server.url_for("img.zip"), "text": "./mirror/../mirror/txt.zip"}
        metrics = download(download_settings(given["images"], given["text"]), Path("raw"))
    assert {kind: origin["source"] for kind, origin in metrics["archives"].items()} == given


@pytest.mark.parametrize(
    ("image_members", "text_members", "problem"),
    [({"d/1.jpg": b"1"}, {"d/readme.md": b"no captions"}, "no .txt, .token, .json, .csv files"),
     ({"d/readme.txt": b"no images"}, {"Flickr8k.token.txt": TOKENS},
      r"no images \(.jpg, .jpeg, .png\) in the archive")],
)
def test_failed_download_keeps_previous_outputs(tmp_path, image_members, text_members, problem):
    raw = tmp_path / "raw"
    for folder in ("images", "text"):
        (raw / folder).mkdir(parents=True)
        (raw / folder / "old").write_text("previous run")
    images = make_zip(tmp_path / "img.zip", image_members)
    text = make_zip(tmp_path / "txt.zip", text_members)
    with pytest.raises(PipelineError, match=problem):
        download(download_settings(images, text), raw)
    assert sorted(p.name for p in raw.iterdir()) == ["images", "text"]
    assert [p.name for p in (raw / "images").iterdir()] == ["old"]
    assert [p.name for p in (raw / "text").iterdir()] == ["old"]


def test_unpacked_cap_counts_both_sources(tmp_path):
    images = make_zip(tmp_path / "img.zip", {"1.jpg": bytes(600_000)})
    text = make_zip(tmp_path / "txt.zip", {"Flickr8k.token.txt": bytes(600_000)})
    with pytest.raises(PipelineError, match=r"img\.zip: declares .*\(archive bomb\?\)"):
        download(download_settings(images, text, max_unpacked_mb=1), tmp_path / "raw")


# --- other kinds of source -----------------------------------------------------------------

@pytest.mark.parametrize(("name", "mode"), [("images.tar", "w"), ("images.tar.gz", "w:gz"),
                                            ("images.tgz", "w:gz")])
def test_tar_archives_of_images_over_http(tmp_path, name, mode):
    make_tar(tmp_path / name, {"coco/train2014/a.jpg": b"a", "coco/val2014/b.png": b"b"}, mode)
    captions = tmp_path / "captions.csv"
    captions.write_text("image,caption\ntrain2014/a.jpg,a dog\n")
    with serve_directory(tmp_path) as server:
        metrics = download(download_settings(server.url_for(name), captions), tmp_path / "raw")
    assert files_under(tmp_path / "raw" / "images") == {"train2014/a.jpg": b"a",
                                                         "val2014/b.png": b"b"}
    assert metrics["images"] == 2


def test_folder_of_images_is_copied_keeping_nested_paths(tmp_path):
    folder = write_user_folder(tmp_path / "coco")
    before = fingerprint(folder)
    captions = tmp_path / "dataset_coco.json"
    captions.write_text('{"images": []}')
    metrics = download(download_settings(folder, captions), tmp_path / "raw")
    brought = tmp_path / "raw" / "images"
    assert files_under(brought) == {"train2014/a.jpg": b"a" * 1000,
                                    "val2014/c.jpeg": b"c", "val2014/deeper/b.PNG": b"b" * 500}
    assert all(p.stat().st_nlink == 1 and not p.is_symlink()
               for p in brought.rglob("*") if p.is_file())
    assert fingerprint(folder) == before
    assert metrics["archives"]["images"] == {"source": str(folder), "bytes": 1501}
    assert metrics["images"] == 3 and metrics["unpacked_bytes"] == 1501 + len('{"images": []}')


def test_folder_source_refuses_a_sha256_an_empty_folder_and_the_cap(tmp_path):
    captions = tmp_path / "captions.txt"
    captions.write_bytes(TOKENS)
    folder = write_user_folder(tmp_path / "coco")
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "sub" / "notes.txt").write_text("no images")
    big = tmp_path / "big"
    (big / "x").mkdir(parents=True)
    (big / "x" / "huge.jpg").write_bytes(bytes(1024 * 1024 + 1))
    cases = [(download_settings(folder, captions, images_sha256="a" * 64),
              "is a folder; download.images_sha256"),
             (download_settings(empty, captions), r"no images \(.jpg, .jpeg, .png\) in the folder"),
             (download_settings(big, captions, max_unpacked_mb=1), "holds 1.0 MB of images, over")]
    for settings, problem in cases:
        with pytest.raises(PipelineError, match=problem):
            download(settings, tmp_path / "raw")
    assert not (tmp_path / "raw" / "images").exists()


@pytest.mark.parametrize("name", ["captions.csv", "dataset_coco.json", "results_20130124.token",
                                  "my_photos.csv", "annotations.json", "captions_2024.txt"])
def test_single_captions_file_is_copied_under_its_name_with_a_record_of_its_source(tmp_path, name):
    images = make_zip(tmp_path / "img.zip", {"1.jpg": b"1"})
    served = tmp_path / "served"
    served.mkdir()
    (served / name).write_bytes(TOKENS)
    with serve_directory(served) as server:
        for source in (str(served / name), server.url_for(name)):
            metrics = download(download_settings(images, source), tmp_path / "raw")
            assert files_under(tmp_path / "raw" / "text") == {name: TOKENS}
            assert json.loads((tmp_path / "raw" / RAW_TEXT_SOURCE.name).read_text()) == {
                "source": source, "single_file": name}
            assert metrics["text_files"] == [name]
            assert metrics["archives"]["text"]["sha256"] == hashlib.sha256(TOKENS).hexdigest()


def test_an_archive_of_captions_is_recorded_as_no_single_file(tmp_path):
    images = make_zip(tmp_path / "img.zip", {"1.jpg": b"1"})
    text = make_zip(tmp_path / "text.zip", {"Flickr8k.token.txt": TOKENS})
    download(download_settings(images, text), tmp_path / "raw")
    record = json.loads((tmp_path / "raw" / RAW_TEXT_SOURCE.name).read_text())
    assert record == {"source": str(text), "single_file": None}
