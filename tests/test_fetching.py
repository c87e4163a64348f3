"""Fetching one source: over HTTP, with retries, status errors, sha256 checks and unreachable servers
named; from a local path or file URL, read in place; and the name a source's file is kept under."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from captioner.acquire.fetching import fetch
from captioner.core.errors import PipelineError
from captioner.core.sources import local_path, source_name
from tests.helpers.downloading import CAP, FAST, SETTING, fetch_bytes
from tests.helpers.http_server import serve_directory
from tests.helpers.network import free_port

# --- over HTTP -----------------------------------------------------------------------------

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


# --- the name a source's file is kept under ------------------------------------------------

@pytest.mark.parametrize(("source", "name"), [
    ("https://host/data/captions.csv", "captions.csv"), ("https://host/data/..", "download"),
    ("https://host/", "download"), ("/data/captions.csv/..", "download"),
])
def test_a_source_s_file_name_is_its_last_part_unless_that_names_no_file(source, name):
    assert source_name(source) == name
