"""Resuming partial downloads: a body cut short is resumed with Range in the same process (or
restarted where the server cannot resume it), and what a killed run left in the next run, the
stage's included, unless the file changed on the server."""

from __future__ import annotations

import subprocess

import pytest

from captioner.acquire import download as download_module
from captioner.core.errors import PipelineError
from captioner.core.paths import RAW_TEXT_SOURCE
from tests.helpers.archives import files_under
from tests.helpers.downloading import (
    STAGE,
    cut_first_download,
    download,
    download_settings,
    fetch_bytes,
    run_download_stage,
    wait_for_stalled_file,
    write_served_archives,
)
from tests.helpers.http_server import serve_directory, validators
from tests.helpers.project import environment_with_code, params_only_project

# --- in the same process ---------------------------------------------------------------------

def test_download_resumes_with_range_after_dropped_connection(payload, tmp_path):
    with serve_directory(payload.parent, drop_after_bytes=200_000) as server:
        data = fetch_bytes(server.url_for(payload.name), tmp_path / "partial")
    assert data == payload.read_bytes()
    assert [r.status for r in server.requests] == [200, 206]
    assert 0 < server.requests[1].resumed_from() <= 200_000  # at most what the dropped one brought
    assert server.requests[1].if_range == validators(payload)[0]


def test_download_restarts_cleanly_when_server_ignores_range(payload, tmp_path):
    with serve_directory(payload.parent, ignore_range=True, drop_after_bytes=200_000) as server:
        data = fetch_bytes(server.url_for(payload.name), tmp_path / "partial")
    assert data == payload.read_bytes()
    assert [r.status for r in server.requests] == [200, 200]
    assert 0 < server.requests[1].resumed_from() <= 200_000


def test_download_without_validators_restarts_instead_of_resuming(payload, tmp_path):
    with serve_directory(payload.parent, send_validators=False, drop_after_bytes=200_000) as server:
        data = fetch_bytes(server.url_for(payload.name), tmp_path / "partial")
    assert data == payload.read_bytes()
    assert [(r.status, r.range) for r in server.requests] == [(200, None), (200, None)]


# --- in the next process --------------------------------------------------------------------

def test_killed_download_resumes_in_the_next_process(tmp_path):
    served, raw = tmp_path / "served", tmp_path / "raw"
    images = write_served_archives(served, seed=1)
    with serve_directory(served, drop_after_bytes=150_000) as server:
        kept = cut_first_download(server.url, served, raw)
        metrics = download(download_settings(server.url_for("images.zip"), served / "text.zip"), raw)
    resumed = server.requests[-1]
    assert (resumed.status, resumed.range) == (206, f"bytes={kept}-")
    assert resumed.if_range == validators(served / "images.zip")[0]
    assert files_under(raw / "images") == images and metrics["images"] == 3
    assert sorted(p.name for p in raw.iterdir()) == ["images", "text", RAW_TEXT_SOURCE.name]


def test_remote_file_changed_since_the_killed_run_downloads_whole(tmp_path):
    served, raw = tmp_path / "served", tmp_path / "raw"
    write_served_archives(served, seed=1)
    with serve_directory(served, drop_after_bytes=150_000) as server:
        cut_first_download(server.url, served, raw)
        new_images = write_served_archives(served, seed=2)
        download(download_settings(server.url_for("images.zip"), served / "text.zip"), raw)
    restarted = server.requests[-1]
    assert restarted.status == 200 and 0 < restarted.resumed_from() <= 150_000
    assert files_under(raw / "images") == new_images


def test_whole_partial_file_is_used_without_downloading_again(tmp_path, monkeypatch):
    served, raw = tmp_path / "served", tmp_path / "raw"
    images = write_served_archives(served, seed=1)
    size = (served / "images.zip").stat().st_size

    def fail_after_the_download(*arguments: object) -> None:
        raise PipelineError("the disk filled up while unpacking")

    with serve_directory(served) as server:
        settings = download_settings(server.url_for("images.zip"), served / "text.zip")
        with monkeypatch.context() as patch:
            patch.setattr(download_module, "unpack_images", fail_after_the_download)
            with pytest.raises(PipelineError, match="the disk filled up"):
                download(settings, raw)
        download(settings, raw)
    assert [(r.status, r.range) for r in server.requests] == [(200, None), (416, f"bytes={size}-")]
    assert files_under(raw / "images") == images


def test_stage_killed_mid_download_resumes_in_the_next_run(tmp_path):
    served = tmp_path / "served"
    images = write_served_archives(served, seed=1)
    with serve_directory(served, drop_after_bytes=500_000, hang_at_drop=True) as server:
        project = params_only_project(tmp_path / "project", {"download": {
            "images_url": server.url_for("images.zip"), "text_url": server.url_for("text.zip")}})
        with subprocess.Popen(STAGE, cwd=project, env=environment_with_code(),
                              stderr=subprocess.DEVNULL) as first:
            partial = wait_for_stalled_file(project / "data/raw/.partial", "*-images.zip")
            first.kill()
        kept = partial.stat().st_size
        second = run_download_stage(project)
    assert second.returncode == 0, second.stderr
    text_again, images_again = server.requests[-2:]
    assert (text_again.status, images_again.status) == (416, 206)  # text whole, images resumed
    assert images_again.range == f"bytes={kept}-" and 0 < kept < 500_000
    assert files_under(project / "data/raw/images") == images
    assert not (project / "data/raw/.partial").exists()
