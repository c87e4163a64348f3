"""The tests' own HTTP server (tests/helpers/http_server.py): the Range and If-Range answers that the
download tests rely on."""

from __future__ import annotations

import os

import requests

from tests.helpers.http_server import serve_directory


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
