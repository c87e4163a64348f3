"""Tests for the download stage: HTTP and local sources, resume across processes, folders and single
captions files, the stage script, and the user's own files under DVC."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import yaml

from captioner.acquire import download as download_module
from captioner.acquire.download import download_dataset
from captioner.acquire.fetching import Cap, HttpPolicy, fetch
from captioner.core.errors import PipelineError
from captioner.core.files import read_json
from captioner.core.params import DownloadParams
from captioner.core.paths import DOWNLOAD_RECORD, RAW_TEXT_SOURCE
from captioner.core.sources import local_path, source_name
from tests.helpers.archives import files_under, fingerprint, make_tar, make_zip
from tests.helpers.http_server import Request, serve_directory, validators
from tests.helpers.project import ROOT, SAMPLE, copy_project, dvc, run, set_params

FAST = HttpPolicy(attempts=3, backoff_s=0.0, connect_timeout_s=2.0, read_timeout_s=5.0)
ONE_TRY = HttpPolicy(attempts=1, backoff_s=0.0, connect_timeout_s=2.0, read_timeout_s=5.0)
CAP = Cap(1 << 40, "no cap a test reaches")
SETTING = "download.images_url"
TOKENS = b"1000268201_693b08cb0e.jpg#0\tA child in a pink dress .\n"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def payload(tmp_path) -> Path:
    """A 300 kB file of random bytes to serve."""
    served = tmp_path / "served"
    served.mkdir()
    path = served / "Flickr8k_Dataset.zip"
    path.write_bytes(os.urandom(300_000))
    return path


def fetch_bytes(url: str, partial_dir: Path, sha256: str = "") -> bytes:
    fetched = fetch(url, sha256, partial_dir, setting=SETTING, cap=CAP, policy=FAST)
    assert fetched.path.parent == partial_dir
    return fetched.path.read_bytes()


def settings_for(images: Path | str, text: Path | str, **overrides: object) -> DownloadParams:
    values = {"images_url": str(images), "text_url": str(text), "images_sha256": "",
              "text_sha256": "", "max_unpacked_mb": 100, **overrides}
    return DownloadParams(**values)


def download(settings: DownloadParams, raw: Path, policy: HttpPolicy = FAST) -> dict:
    return download_dataset(settings, images_dir=raw / "images", text_dir=raw / "text",
                            text_source=raw / RAW_TEXT_SOURCE.name,
                            partial_dir=raw / ".partial", policy=policy)


# --- the test server itself ---------------------------------------------------------------

def test_server_answers_ranges_and_refuses_ranges_past_the_end(payload):
    content = payload.read_bytes()
    with serve_directory(payload.parent) as server:
        url = server.url_for(payload.name)
        whole = requests.get(url, timeout=5)
        middle = requests.get(url, headers={"Range": "bytes=10-19"}, timeout=5)
        tail = requests.get(url, headers={"Range": "bytes=-5"}, timeout=5)
        past_end = requests.get(url, headers={"Range": f"bytes={len(content)}-"}, timeout=5)
    assert (whole.status_code, whole.content) == (200, content)
    assert (middle.status_code, middle.content) == (206, content[10:20])
    assert middle.headers["Content-Range"] == f"bytes 10-19/{len(content)}"
    assert (tail.status_code, tail.content) == (206, content[-5:])
    assert past_end.status_code == 416


def test_server_honours_if_range_only_while_the_file_is_unchanged(payload):
    with serve_directory(payload.parent) as server:
        url = server.url_for(payload.name)
        etag = requests.get(url, timeout=5).headers["ETag"]
        same = requests.get(url, headers={"Range": "bytes=10-", "If-Range": etag}, timeout=5)
        payload.write_bytes(os.urandom(300_000))
        changed = requests.get(url, headers={"Range": "bytes=10-", "If-Range": etag}, timeout=5)
    assert same.status_code == 206
    assert (changed.status_code, changed.content) == (200, payload.read_bytes())


def resumed_from(request: Request) -> int:
    """The offset a request's `Range: bytes=N-` asks to resume from."""
    match = re.fullmatch(r"bytes=(\d+)-", request.range or "")
    assert match, f"not a resuming Range: {request.range!r}"
    return int(match[1])


# --- fetching over HTTP --------------------------------------------------------------------

def test_download_resumes_with_range_after_dropped_connection(payload, tmp_path):
    with serve_directory(payload.parent, drop_after_bytes=200_000) as server:
        data = fetch_bytes(server.url_for(payload.name), tmp_path / "partial")
    assert data == payload.read_bytes()
    assert [r.status for r in server.requests] == [200, 206]
    assert 0 < resumed_from(server.requests[1]) <= 200_000  # at most what the dropped one brought
    assert server.requests[1].if_range == validators(payload)[0]


def test_download_restarts_cleanly_when_server_ignores_range(payload, tmp_path):
    with serve_directory(payload.parent, ignore_range=True, drop_after_bytes=200_000) as server:
        data = fetch_bytes(server.url_for(payload.name), tmp_path / "partial")
    assert data == payload.read_bytes()
    assert [r.status for r in server.requests] == [200, 200]
    assert 0 < resumed_from(server.requests[1]) <= 200_000


def test_download_without_validators_restarts_instead_of_resuming(payload, tmp_path):
    with serve_directory(payload.parent, send_validators=False, drop_after_bytes=200_000) as server:
        data = fetch_bytes(server.url_for(payload.name), tmp_path / "partial")
    assert data == payload.read_bytes()
    assert [(r.status, r.range) for r in server.requests] == [(200, None), (200, None)]


def test_download_retries_server_errors_then_succeeds(payload, tmp_path):
    with serve_directory(payload.parent, status=503, status_times=2) as server:
        data = fetch_bytes(server.url_for(payload.name), tmp_path / "partial")
    assert data == payload.read_bytes()
    assert [r.status for r in server.requests] == [503, 503, 200]


def test_download_gives_up_on_persistent_500(payload, tmp_path):
    with serve_directory(payload.parent, status=500) as server:
        url = server.url_for(payload.name)
        with pytest.raises(PipelineError, match="HTTP 500") as caught:
            fetch_bytes(url, tmp_path / "partial")
    assert url in str(caught.value)
    assert len(server.requests) == FAST.attempts


def test_download_fails_at_once_on_404(payload, tmp_path):
    with serve_directory(payload.parent) as server:
        url = server.url_for("missing.zip")
        with pytest.raises(PipelineError, match="HTTP 404") as caught:
            fetch_bytes(url, tmp_path / "partial")
    assert url in str(caught.value)
    assert len(server.requests) == 1


def test_download_with_wrong_sha256_is_refused_and_removed(payload, tmp_path):
    partial = tmp_path / "partial"
    actual = hashlib.sha256(payload.read_bytes()).hexdigest()
    with serve_directory(payload.parent) as server:
        url = server.url_for(payload.name)
        with pytest.raises(PipelineError, match="sha256 mismatch") as caught:
            fetch_bytes(url, partial, sha256="0" * 64)
    assert url in str(caught.value) and "0" * 64 in str(caught.value)
    assert actual in str(caught.value)
    assert list(partial.iterdir()) == []


def test_download_with_right_sha256_passes(payload, tmp_path):
    actual = hashlib.sha256(payload.read_bytes()).hexdigest()
    with serve_directory(payload.parent) as server:
        assert fetch_bytes(server.url_for(payload.name), tmp_path / "s", actual) == \
            payload.read_bytes()


def test_unreachable_server_error_tells_how_to_use_a_local_copy(tmp_path):
    url = f"http://127.0.0.1:{free_port()}/Flickr8k_Dataset.zip"
    with pytest.raises(PipelineError) as caught:
        fetch_bytes(url, tmp_path / "partial")
    message = str(caught.value)
    assert "unreachable" in message and url in message and "\n" not in message
    assert "dvc exp run -S download.images_url=/path/to/Flickr8k_Dataset.zip" in message
    assert "Connection refused" in message


# --- resuming in the next process ----------------------------------------------------------

def served_dataset(folder: Path, seed: int) -> dict[str, bytes]:
    """Writes images.zip (three 400 kB images: over 1 MB) and text.zip into `folder`; the images."""
    folder.mkdir(exist_ok=True)
    images = {f"{seed}_{i}.jpg": os.urandom(400_000) for i in range(3)}
    make_zip(folder / "images.zip", {f"Flicker8k_Dataset/{name}": data for name, data in images.items()})
    make_zip(folder / "text.zip", {"Flickr8k_text/Flickr8k.token.txt": TOKENS})
    return images


def killed_first_run(server_url: str, served: Path, raw: Path) -> int:
    """A first run whose image download is cut and not retried, as by a killed process;
    returns the size of the partial file it leaves."""
    settings = settings_for(f"{server_url}/images.zip", served / "text.zip")
    with pytest.raises(PipelineError, match="download failed after 1 attempts"):
        download(settings, raw, policy=ONE_TRY)
    partial_files = [p for p in (raw / ".partial").iterdir() if p.name.endswith("images.zip")]
    assert len(partial_files) == 1
    assert 0 < partial_files[0].stat().st_size < (served / "images.zip").stat().st_size
    assert not (raw / "images").exists()
    return partial_files[0].stat().st_size


def test_killed_download_resumes_in_the_next_process(tmp_path):
    served, raw = tmp_path / "served", tmp_path / "raw"
    images = served_dataset(served, seed=1)
    with serve_directory(served, drop_after_bytes=150_000) as server:
        kept = killed_first_run(server.url, served, raw)
        metrics = download(settings_for(server.url_for("images.zip"), served / "text.zip"), raw)
    resumed = server.requests[-1]
    assert (resumed.status, resumed.range) == (206, f"bytes={kept}-")
    assert resumed.if_range == validators(served / "images.zip")[0]
    assert files_under(raw / "images") == images and metrics["images"] == 3
    assert sorted(p.name for p in raw.iterdir()) == ["images", "text", RAW_TEXT_SOURCE.name]


def test_remote_file_changed_since_the_killed_run_downloads_whole(tmp_path):
    served, raw = tmp_path / "served", tmp_path / "raw"
    served_dataset(served, seed=1)
    with serve_directory(served, drop_after_bytes=150_000) as server:
        killed_first_run(server.url, served, raw)
        new_images = served_dataset(served, seed=2)
        download(settings_for(server.url_for("images.zip"), served / "text.zip"), raw)
    restarted = server.requests[-1]
    assert restarted.status == 200 and 0 < resumed_from(restarted) <= 150_000
    assert files_under(raw / "images") == new_images


def test_whole_partial_file_is_used_without_downloading_again(tmp_path, monkeypatch):
    served, raw = tmp_path / "served", tmp_path / "raw"
    images = served_dataset(served, seed=1)
    size = (served / "images.zip").stat().st_size

    def fail_after_the_download(*arguments: object) -> None:
        raise PipelineError("the disk filled up while unpacking")

    with serve_directory(served) as server:
        settings = settings_for(server.url_for("images.zip"), served / "text.zip")
        with monkeypatch.context() as patch:
            patch.setattr(download_module, "unpack_images", fail_after_the_download)
            with pytest.raises(PipelineError, match="the disk filled up"):
                download(settings, raw)
        download(settings, raw)
    assert [(r.status, r.range) for r in server.requests] == [(200, None), (416, f"bytes={size}-")]
    assert files_under(raw / "images") == images


# --- local sources -------------------------------------------------------------------------

def test_file_url_and_relative_path_are_read_in_place(payload, tmp_path, monkeypatch):
    monkeypatch.chdir(payload.parent.parent)
    relative = Path(payload.parent.name) / payload.name
    for source in (payload.as_uri(), str(relative)):
        fetched = fetch(source, "", tmp_path / "partial", setting=SETTING, cap=CAP)
        assert fetched.path.resolve() == payload
        assert fetched.sha256 == hashlib.sha256(payload.read_bytes()).hexdigest()
        assert fetched.size_bytes == 300_000
    assert not (tmp_path / "partial").exists()


def test_local_file_with_wrong_sha256_is_refused_but_kept(payload, tmp_path):
    with pytest.raises(PipelineError, match="sha256 mismatch"):
        fetch(str(payload), "f" * 64, tmp_path, setting=SETTING, cap=CAP)
    assert payload.exists()


def test_missing_local_file_folder_and_unknown_scheme_are_named(tmp_path):
    with pytest.raises(PipelineError, match="nope.zip: no such file"):
        fetch(str(tmp_path / "nope.zip"), "", tmp_path, setting=SETTING, cap=CAP)
    with pytest.raises(PipelineError, match="is a folder, download.text_url takes a file"):
        fetch(str(tmp_path), "", tmp_path, setting="download.text_url", cap=CAP)
    with pytest.raises(PipelineError, match="unsupported URL scheme 'ftp'"):
        local_path("ftp://example.com/a.zip")


# --- the whole download --------------------------------------------------------------------

def test_download_dataset_brings_both_archives(tmp_path):
    images = make_zip(tmp_path / "img.zip", {"Flicker8k_Dataset/1.jpg": b"1",
                                              "Flicker8k_Dataset/2.jpg": b"22"})
    text = make_zip(tmp_path / "txt.zip", {"Flickr8k_text/Flickr8k.token.txt": TOKENS,
                                            "Flickr8k_text/Flickr_8k.trainImages.txt": b"1.jpg\n"})
    with serve_directory(tmp_path) as server:
        settings = settings_for(server.url_for("img.zip"), text)
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
        metrics = download(settings_for(given["images"], given["text"]), Path("raw"))
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
        download(settings_for(images, text), raw)
    assert sorted(p.name for p in raw.iterdir()) == ["images", "text"]
    assert [p.name for p in (raw / "images").iterdir()] == ["old"]
    assert [p.name for p in (raw / "text").iterdir()] == ["old"]


def test_unpacked_cap_counts_both_sources(tmp_path):
    images = make_zip(tmp_path / "img.zip", {"1.jpg": bytes(600_000)})
    text = make_zip(tmp_path / "txt.zip", {"Flickr8k.token.txt": bytes(600_000)})
    with pytest.raises(PipelineError, match=r"img\.zip: declares .*\(archive bomb\?\)"):
        download(settings_for(images, text, max_unpacked_mb=1), tmp_path / "raw")


# --- other kinds of source -----------------------------------------------------------------

@pytest.mark.parametrize(("name", "mode"), [("images.tar", "w"), ("images.tar.gz", "w:gz"),
                                            ("images.tgz", "w:gz")])
def test_tar_archives_of_images_over_http(tmp_path, name, mode):
    make_tar(tmp_path / name, {"coco/train2014/a.jpg": b"a", "coco/val2014/b.png": b"b"}, mode)
    captions = tmp_path / "captions.csv"
    captions.write_text("image,caption\ntrain2014/a.jpg,a dog\n")
    with serve_directory(tmp_path) as server:
        metrics = download(settings_for(server.url_for(name), captions), tmp_path / "raw")
    assert files_under(tmp_path / "raw" / "images") == {"train2014/a.jpg": b"a",
                                                         "val2014/b.png": b"b"}
    assert metrics["images"] == 2


def user_folder(root: Path) -> Path:
    """A COCO-like folder of the user's: nested images, a hidden one, and other files."""
    for name, content in {"train2014/a.jpg": b"a" * 1000, "val2014/deeper/b.PNG": b"b" * 500,
                          "val2014/c.jpeg": b"c", "README.txt": b"not an image",
                          ".thumbnails/t.jpg": b"hidden", "train2014/.d.jpg": b"hidden"}.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(content)
    return root




def test_folder_of_images_is_copied_keeping_nested_paths(tmp_path):
    folder = user_folder(tmp_path / "coco")
    before = fingerprint(folder)
    captions = tmp_path / "dataset_coco.json"
    captions.write_text('{"images": []}')
    metrics = download(settings_for(folder, captions), tmp_path / "raw")
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
    folder = user_folder(tmp_path / "coco")
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "sub" / "notes.txt").write_text("no images")
    big = tmp_path / "big"
    (big / "x").mkdir(parents=True)
    (big / "x" / "huge.jpg").write_bytes(bytes(1024 * 1024 + 1))
    cases = [(settings_for(folder, captions, images_sha256="a" * 64),
              "is a folder; download.images_sha256"),
             (settings_for(empty, captions), r"no images \(.jpg, .jpeg, .png\) in the folder"),
             (settings_for(big, captions, max_unpacked_mb=1), "holds 1.0 MB of images, over")]
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
            metrics = download(settings_for(images, source), tmp_path / "raw")
            assert files_under(tmp_path / "raw" / "text") == {name: TOKENS}
            assert json.loads((tmp_path / "raw" / RAW_TEXT_SOURCE.name).read_text()) == {
                "source": source, "single_file": name}
            assert metrics["text_files"] == [name]
            assert metrics["archives"]["text"]["sha256"] == hashlib.sha256(TOKENS).hexdigest()


def test_an_archive_of_captions_is_recorded_as_no_single_file(tmp_path):
    images = make_zip(tmp_path / "img.zip", {"1.jpg": b"1"})
    text = make_zip(tmp_path / "text.zip", {"Flickr8k.token.txt": TOKENS})
    download(settings_for(images, text), tmp_path / "raw")
    record = json.loads((tmp_path / "raw" / RAW_TEXT_SOURCE.name).read_text())
    assert record == {"source": str(text), "single_file": None}


# --- the stage -----------------------------------------------------------------------------

STAGE = [sys.executable, "-m", "stages.download"]
STAGE_ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def write_params(workdir: Path, images: str, text: str) -> None:
    document = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    document["download"].update(images_url=images, text_url=text)
    (workdir / "params.yaml").write_text(yaml.safe_dump(document), encoding="utf-8")


def run_stage(workdir: Path, images: str, text: str) -> subprocess.CompletedProcess:
    write_params(workdir, images, text)
    return subprocess.run(STAGE, cwd=workdir, env=STAGE_ENV, capture_output=True, text=True,
                          timeout=120)


def size_once_still(path_pattern: str, folder: Path, timeout_s: float = 60) -> Path:
    """The file matching `path_pattern` in `folder`, once it is not empty and stops growing."""
    deadline, last_size = time.monotonic() + timeout_s, -1
    while time.monotonic() < deadline:
        found = sorted(folder.glob(path_pattern)) if folder.is_dir() else []
        size = found[0].stat().st_size if found else 0
        if size and size == last_size:
            return found[0]
        last_size = size
        time.sleep(0.3)
    raise AssertionError(f"no growing {path_pattern} in {folder} within {timeout_s} s")


def test_stage_killed_mid_download_resumes_in_the_next_run(tmp_path):
    served, project = tmp_path / "served", tmp_path / "project"
    images = served_dataset(served, seed=1)
    project.mkdir()
    with serve_directory(served, drop_after_bytes=500_000, hang_at_drop=True) as server:
        write_params(project, server.url_for("images.zip"), server.url_for("text.zip"))
        with subprocess.Popen(STAGE, cwd=project, env=STAGE_ENV, stderr=subprocess.DEVNULL) as first:
            partial = size_once_still("*-images.zip", project / "data/raw/.partial")
            first.kill()
        kept = partial.stat().st_size
        second = subprocess.run(STAGE, cwd=project, env=STAGE_ENV, capture_output=True, text=True,
                                timeout=120)
    assert second.returncode == 0, second.stderr
    text_again, images_again = server.requests[-2:]
    assert (text_again.status, images_again.status) == (416, 206)  # text whole, images resumed
    assert images_again.range == f"bytes={kept}-" and 0 < kept < 500_000
    assert files_under(project / "data/raw/images") == images
    assert not (project / "data/raw/.partial").exists()


@pytest.mark.skipif(not SAMPLE.exists(), reason=f"sample archives not found at {SAMPLE}")
def test_stage_unpacks_the_sample_archives(tmp_path):
    result = run_stage(tmp_path, str(SAMPLE / "Flickr8k_Dataset.zip"),
                       (SAMPLE / "Flickr8k_text.zip").as_uri())
    assert result.returncode == 0, result.stderr
    images = list((tmp_path / "data" / "raw" / "images").iterdir())
    assert len(images) == 200 and all(p.suffix == ".jpg" for p in images)
    text = tmp_path / "data" / "raw" / "text"
    for name in ("Flickr8k.token.txt", "Flickr_8k.trainImages.txt", "Flickr_8k.devImages.txt",
                 "Flickr_8k.testImages.txt"):
        assert (text / name).is_file()
    metrics = read_json(tmp_path / DOWNLOAD_RECORD)
    assert metrics["images"] == 200
    for kind, archive in (("text", "Flickr8k_text.zip"), ("images", "Flickr8k_Dataset.zip")):
        expected = hashlib.sha256((SAMPLE / archive).read_bytes()).hexdigest()
        assert metrics["archives"][kind]["sha256"] == expected


def test_stage_reports_a_bad_source_in_one_line(tmp_path):
    result = run_stage(tmp_path, str(tmp_path / "absent.zip"), str(tmp_path / "absent.zip"))
    assert result.returncode == 1
    assert result.stderr == f"error: {tmp_path / 'absent.zip'}: no such file\n"


@pytest.mark.slow
def test_dvc_never_changes_the_users_folder(tmp_path):
    """The stage clones a folder's images: with every DVC cache type, reruns, a relinking checkout
    and garbage collection leave the user's files exactly as they were (per-file symlinks or hard
    links would not: DVC's hardlink cache takes the user's inode and makes it read-only)."""
    folder = user_folder(tmp_path / "coco")
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


@pytest.mark.parametrize(("source", "name"), [
    ("https://host/data/captions.csv", "captions.csv"), ("https://host/data/..", "download"),
    ("https://host/", "download"), ("/data/captions.csv/..", "download"),
])
def test_a_source_s_file_name_is_its_last_part_unless_that_names_no_file(source, name):
    assert source_name(source) == name
