"""Tests for the download stage: HTTP and local sources, safe unpacking, the stage script."""

from __future__ import annotations

import hashlib
import os
import re
import socket
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import requests

from captioner.download import (
    Archive,
    HttpPolicy,
    download_dataset,
    extract_flat,
    fetch,
    local_path,
)
from captioner.errors import PipelineError
from captioner.files import read_json
from captioner.params import DownloadParams
from tests.http_server import serve_directory

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO.parent / "shared" / "flickr8k-sample"
FAST = HttpPolicy(attempts=3, backoff_s=0.0, connect_timeout_s=2.0, read_timeout_s=5.0)
SETTING = "download.images_url"
TOKENS = b"1000268201_693b08cb0e.jpg#0\tA child in a pink dress .\n"


def make_zip(path: Path, members: dict[str, bytes]) -> Path:
    """Writes a deflated zip holding `members` (name -> content)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return path


def archive_at(path: Path) -> Archive:
    return Archive(str(path), path, path.stat().st_size, "")


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


def fetch_bytes(url: str, scratch: Path, sha256: str = "") -> bytes:
    scratch.mkdir(exist_ok=True)
    with fetch(url, sha256, scratch, setting=SETTING, policy=FAST) as archive:
        assert archive.path.parent.parent == scratch
        return archive.path.read_bytes()


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


# --- fetching over HTTP --------------------------------------------------------------------

def test_download_resumes_with_range_after_dropped_connection(payload, tmp_path):
    with serve_directory(payload.parent, drop_after_bytes=200_000) as server:
        data = fetch_bytes(server.url_for(payload.name), tmp_path / "scratch")
    assert data == payload.read_bytes()
    assert [r.status for r in server.requests] == [200, 206]
    assert re.fullmatch(r"bytes=[1-9]\d*-", server.requests[1].range)


def test_download_restarts_cleanly_when_server_ignores_range(payload, tmp_path):
    with serve_directory(payload.parent, ignore_range=True, drop_after_bytes=200_000) as server:
        data = fetch_bytes(server.url_for(payload.name), tmp_path / "scratch")
    assert data == payload.read_bytes()
    assert [r.status for r in server.requests] == [200, 200]
    assert server.requests[1].range is not None


def test_download_retries_server_errors_then_succeeds(payload, tmp_path):
    with serve_directory(payload.parent, status=503, status_times=2) as server:
        data = fetch_bytes(server.url_for(payload.name), tmp_path / "scratch")
    assert data == payload.read_bytes()
    assert [r.status for r in server.requests] == [503, 503, 200]


def test_download_gives_up_on_persistent_500(payload, tmp_path):
    with serve_directory(payload.parent, status=500) as server:
        url = server.url_for(payload.name)
        with pytest.raises(PipelineError, match="HTTP 500") as caught:
            fetch_bytes(url, tmp_path / "scratch")
    assert url in str(caught.value)
    assert len(server.requests) == FAST.attempts


def test_download_fails_at_once_on_404(payload, tmp_path):
    with serve_directory(payload.parent) as server:
        url = server.url_for("missing.zip")
        with pytest.raises(PipelineError, match="HTTP 404") as caught:
            fetch_bytes(url, tmp_path / "scratch")
    assert url in str(caught.value)
    assert len(server.requests) == 1


def test_download_with_wrong_sha256_is_refused_and_removed(payload, tmp_path):
    scratch = tmp_path / "scratch"
    actual = hashlib.sha256(payload.read_bytes()).hexdigest()
    with serve_directory(payload.parent) as server:
        url = server.url_for(payload.name)
        with pytest.raises(PipelineError, match="sha256 mismatch") as caught:
            fetch_bytes(url, scratch, sha256="0" * 64)
    assert url in str(caught.value) and "0" * 64 in str(caught.value)
    assert actual in str(caught.value)
    assert list(scratch.iterdir()) == []


def test_download_with_right_sha256_passes(payload, tmp_path):
    actual = hashlib.sha256(payload.read_bytes()).hexdigest()
    with serve_directory(payload.parent) as server:
        assert fetch_bytes(server.url_for(payload.name), tmp_path / "s", actual) == \
            payload.read_bytes()


def test_unreachable_server_error_tells_how_to_use_a_local_copy(tmp_path):
    url = f"http://127.0.0.1:{free_port()}/Flickr8k_Dataset.zip"
    with pytest.raises(PipelineError) as caught:
        fetch_bytes(url, tmp_path / "scratch")
    message = str(caught.value)
    assert "unreachable" in message and url in message and "\n" not in message
    assert "dvc exp run -S download.images_url=/path/to/Flickr8k_Dataset.zip" in message
    assert "Connection refused" in message


# --- local sources -------------------------------------------------------------------------

def test_file_url_and_relative_path_are_read_in_place(payload, tmp_path, monkeypatch):
    monkeypatch.chdir(payload.parent.parent)
    relative = Path(payload.parent.name) / payload.name
    for source in (payload.as_uri(), str(relative)):
        with fetch(source, "", tmp_path, setting=SETTING) as archive:
            assert archive.path.resolve() == payload
            assert archive.sha256 == hashlib.sha256(payload.read_bytes()).hexdigest()
            assert archive.size_bytes == 300_000


def test_local_file_with_wrong_sha256_is_refused_but_kept(payload, tmp_path):
    with pytest.raises(PipelineError, match="sha256 mismatch"):
        with fetch(str(payload), "f" * 64, tmp_path, setting=SETTING):
            pass
    assert payload.exists()


def test_missing_local_file_and_unknown_scheme_are_named(tmp_path):
    with pytest.raises(PipelineError, match="nope.zip: no such file"):
        with fetch(str(tmp_path / "nope.zip"), "", tmp_path, setting=SETTING):
            pass
    with pytest.raises(PipelineError, match="unsupported URL scheme 'ftp'"):
        local_path("ftp://example.com/a.zip")


# --- safe extraction -----------------------------------------------------------------------

@pytest.mark.parametrize(
    ("member", "problem"),
    [("../evil.jpg", "escapes the archive"), ("top/../../evil.jpg", "escapes the archive"),
     ("/etc/evil.jpg", "absolute path"), ("C:/evil.jpg", "absolute path")],
)
def test_unsafe_member_names_are_refused(tmp_path, member, problem):
    zipped = make_zip(tmp_path / "bad.zip", {"ok.jpg": b"x", member: b"y"})
    with pytest.raises(PipelineError, match=problem) as caught:
        extract_flat(archive_at(zipped), tmp_path / "out", (".jpg",), 10**6)
    assert str(zipped) in str(caught.value) and member in str(caught.value)


def test_symlink_member_is_refused(tmp_path):
    link = zipfile.ZipInfo("images/link.jpg")
    link.create_system = 3
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    zipped = tmp_path / "link.zip"
    with zipfile.ZipFile(zipped, "w") as archive:
        archive.writestr(link, "/etc/passwd")
    with pytest.raises(PipelineError, match="symbolic link"):
        extract_flat(archive_at(zipped), tmp_path / "out", (".jpg",), 10**6)


def test_zip_bomb_over_the_cap_is_refused_before_writing(tmp_path):
    zipped = make_zip(tmp_path / "bomb.zip", {"a.jpg": bytes(3 * 1024 * 1024)})
    assert zipped.stat().st_size < 10_000
    with pytest.raises(PipelineError, match="zip bomb"):
        extract_flat(archive_at(zipped), tmp_path / "out", (".jpg",), 1024 * 1024)
    assert not (tmp_path / "out").exists()


def test_member_larger_than_declared_is_refused(tmp_path):
    zipped = make_zip(tmp_path / "liar.zip", {"a.jpg": bytes(200_000)})
    content = bytearray(zipped.read_bytes())
    with zipfile.ZipFile(zipped) as archive:
        offset = archive.infolist()[0].header_offset
    for size_field in (offset + 22, content.rindex(b"PK\x01\x02") + 24):
        content[size_field:size_field + 4] = (1000).to_bytes(4, "little")
    zipped.write_bytes(bytes(content))
    with pytest.raises(PipelineError, match="damaged member 'a.jpg'"):
        extract_flat(archive_at(zipped), tmp_path / "out", (".jpg",), 10**6)
    assert (tmp_path / "out" / "a.jpg").stat().st_size <= 1000


def test_not_a_zip_and_truncated_zip_are_named(tmp_path):
    html = tmp_path / "page.zip"
    html.write_text("<html>rate limited</html>")
    whole = make_zip(tmp_path / "whole.zip", {f"{i}.jpg": os.urandom(2000) for i in range(5)})
    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(whole.read_bytes()[:5000])
    with pytest.raises(PipelineError, match=r"page\.zip: not a zip archive"):
        extract_flat(archive_at(html), tmp_path / "out", (".jpg",), 10**6)
    with pytest.raises(PipelineError, match=r"truncated\.zip: truncated or damaged zip"):
        extract_flat(archive_at(truncated), tmp_path / "out", (".jpg",), 10**6)


def test_nested_folders_are_flattened_and_macosx_skipped(tmp_path):
    zipped = make_zip(tmp_path / "images.zip", {
        "Some_Top/": b"", "Some_Top/inner/a.jpg": b"a", "Some_Top/B.JPEG": b"b",
        "Some_Top/notes.md": b"n", "__MACOSX/Some_Top/._a.jpg": b"junk",
    })
    unpacked = extract_flat(archive_at(zipped), tmp_path / "out", (".jpg", ".jpeg"), 10**6)
    assert unpacked.names == ["B.JPEG", "a.jpg"] and unpacked.unpacked_bytes == 2
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["B.JPEG", "a.jpg"]


def test_two_members_with_one_base_name_are_refused(tmp_path):
    zipped = make_zip(tmp_path / "dup.zip", {"x/a.jpg": b"1", "y/a.jpg": b"2"})
    with pytest.raises(PipelineError, match="both unpack to 'a.jpg'"):
        extract_flat(archive_at(zipped), tmp_path / "out", (".jpg",), 10**6)


# --- the whole download --------------------------------------------------------------------

def settings_for(images: Path, text: Path, **overrides: object) -> DownloadParams:
    return DownloadParams(images_url=str(images), text_url=str(text), **overrides)


def test_download_dataset_normalises_both_archives(tmp_path):
    images = make_zip(tmp_path / "img.zip", {"Flicker8k_Dataset/1.jpg": b"1",
                                              "Flicker8k_Dataset/2.jpg": b"22"})
    text = make_zip(tmp_path / "txt.zip", {"Flickr8k_text/Flickr8k.token.txt": TOKENS,
                                            "Flickr8k_text/Flickr_8k.trainImages.txt": b"1.jpg\n"})
    with serve_directory(tmp_path) as server:
        settings = DownloadParams(images_url=server.url_for("img.zip"), text_url=str(text))
        metrics = download_dataset(settings, tmp_path / "raw", policy=FAST)
    assert sorted(p.name for p in (tmp_path / "raw" / "images").iterdir()) == ["1.jpg", "2.jpg"]
    assert metrics["text_files"] == ["Flickr8k.token.txt", "Flickr_8k.trainImages.txt"]
    assert (tmp_path / "raw" / "text" / "Flickr8k.token.txt").read_bytes() == TOKENS
    assert metrics["images"] == 2
    assert metrics["archives"]["images"]["sha256"] == hashlib.sha256(
        images.read_bytes()).hexdigest()
    assert metrics["archives"]["text"]["bytes"] == text.stat().st_size
    assert sorted(p.name for p in (tmp_path / "raw").iterdir()) == ["images", "text"]


@pytest.mark.parametrize(
    ("image_members", "text_members", "problem"),
    [({"d/1.jpg": b"1"}, {"Flickr_8k.trainImages.txt": b"1.jpg\n"},
      "caption file Flickr8k.token.txt not found"),
     ({"d/readme.txt": b"no images"}, {"Flickr8k.token.txt": TOKENS}, "no JPEG images")],
)
def test_failed_download_keeps_previous_outputs(tmp_path, image_members, text_members, problem):
    raw = tmp_path / "raw"
    for folder in ("images", "text"):
        (raw / folder).mkdir(parents=True)
        (raw / folder / "old").write_text("previous run")
    images = make_zip(tmp_path / "img.zip", image_members)
    text = make_zip(tmp_path / "txt.zip", text_members)
    with pytest.raises(PipelineError, match=problem):
        download_dataset(settings_for(images, text), raw)
    assert sorted(p.name for p in raw.iterdir()) == ["images", "text"]
    assert [p.name for p in (raw / "images").iterdir()] == ["old"]
    assert [p.name for p in (raw / "text").iterdir()] == ["old"]


def test_unpacked_cap_counts_both_archives(tmp_path):
    images = make_zip(tmp_path / "img.zip", {"1.jpg": bytes(600_000)})
    text = make_zip(tmp_path / "txt.zip", {"Flickr8k.token.txt": bytes(600_000)})
    with pytest.raises(PipelineError, match=r"img\.zip: declares .*\(zip bomb\?\)"):
        download_dataset(settings_for(images, text, max_unpacked_mb=1), tmp_path / "raw")


def run_stage(workdir: Path, images: str, text: str) -> subprocess.CompletedProcess:
    (workdir / "params.yaml").write_text(
        f"download:\n  images_url: {images}\n  text_url: {text}\n", encoding="utf-8"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "stages.download"], cwd=workdir, env=env,
                          capture_output=True, text=True, timeout=120)


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
    metrics = read_json(tmp_path / "metrics" / "download.json")
    assert metrics["images"] == 200
    assert metrics["archives"]["text"]["sha256"] == \
        "1e41cef1b6fecdec453156db8929e8e2cb71bcd787c178a88e2e138c4a49230c"
    assert metrics["archives"]["images"]["sha256"] == \
        "09aa411a53e231427be3f890b99445a3691f4837e53491c31635d2e6ca5cb9fc"


def test_stage_reports_a_bad_source_in_one_line(tmp_path):
    result = run_stage(tmp_path, str(tmp_path / "absent.zip"), str(tmp_path / "absent.zip"))
    assert result.returncode == 1
    assert result.stderr == f"error: {tmp_path / 'absent.zip'}: no such file\n"
