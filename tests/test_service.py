"""The caption service: predict's captions over HTTP, micro-batched; every bad request refused
with its status and a JSON error, and the service still serving after it."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import requests
from fastapi.testclient import TestClient
from PIL import Image

from captioner.inference.batching import MicroBatcher
from captioner.inference.captioning import ImageCaptioner
from captioner.inference.limits import ServiceLimits
from captioner.inference.model_card import CARD_JSON, file_md5
from captioner.inference.service import PAGE, create_app
from captioner.inference.uploads import SPOOL_BYTES
from captioner.model.artifacts import model_info_path
from tests.helpers.datasets import CORRUPT_BYTES, draw, jpeg_bytes
from tests.helpers.serving import SETTINGS, predicted, serving, trained_model

MAX_UPLOAD = 200_000
# TestClient's address: the service answers to the loopback names only.
BASE_URL = "http://127.0.0.1:8000"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("service")
    model, pictures = trained_model(folder)
    # Unseen drawings too, as JPEGs at other sizes, where the model is less sure.
    rng = np.random.default_rng(7)
    for index, (shape, colour, size) in enumerate([("circle", "blue", (300, 200)),
                                                   ("square", "yellow", (150, 260)),
                                                   ("triangle", "red", (224, 224))]):
        path = folder / "pictures" / f"unseen_{index}.jpg"
        path.write_bytes(jpeg_bytes(draw(shape, colour, "black", rng, size=size)))
        pictures.append(path)
    return model, pictures


@pytest.fixture(scope="module")
def captioner(trained):
    return ImageCaptioner(trained[0], SETTINGS)


@pytest.fixture(scope="module")
def client(captioner):
    with TestClient(create_app(captioner, ServiceLimits(max_upload_bytes=MAX_UPLOAD)),
                    base_url=BASE_URL) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def expected(trained):
    model, pictures = trained
    return predicted(model, pictures)


def post_file(client, path: Path, name: str | None = None):
    return client.post("/caption", files={"file": (name or path.name, path.read_bytes())})


def test_each_caption_is_predicts_with_the_beams_alternatives(client, trained, expected):
    model, pictures = trained
    md5 = hashlib.md5(model.read_bytes()).hexdigest()
    for path in pictures:
        answer = post_file(client, path)
        assert answer.status_code == 200
        body = answer.json()
        assert (body["image"], body["caption"]) == (path.name, expected[path.name])
        alternatives = body["alternatives"]
        assert len(alternatives) == SETTINGS.beam_size
        assert alternatives[0]["caption"] == body["caption"]
        scores = [alternative["score"] for alternative in alternatives]
        assert scores == sorted(scores, reverse=True) and scores[0] < 0
        assert body["model"] == {"path": str(model), "md5": md5}
        assert 0 < body["seconds"] < 60


def test_a_raw_body_is_captioned_as_the_same_file_uploaded(client, trained, expected):
    path = trained[1][-1]
    answer = client.post("/caption", content=path.read_bytes(),
                         headers={"content-type": "image/jpeg"})
    assert answer.status_code == 200
    assert answer.json()["caption"] == expected[path.name]


def test_health_names_the_model_and_its_decoding(client, trained):
    body = client.get("/health").json()
    assert body["status"] == "ok" and body["model"]["path"] == str(trained[0])
    assert body["decoding"] == {"beam_size": 3, "max_length": 8, "length_penalty": 0.5}


def test_model_gives_a_published_model_s_card_and_404_for_a_model_without_one(client, trained,
                                                                              tmp_path):
    missing = client.get("/model")
    assert missing.status_code == 404
    assert missing.json() == {"error": f"{trained[0]} has no model card: it is published with "
                                       "one by `dvc repro publish`"}
    card = {"headline": {"text": "BLEU-4 0.228 on 1,000 test images · published 2026-12-07"},
            "model": {"file": trained[0].name, "md5": file_md5(trained[0]),
                      "decoding": {"beam_size": 3, "max_length": 8, "length_penalty": 0.5}}}
    published = tmp_path / "published"
    published.mkdir()
    for path in (trained[0], model_info_path(trained[0])):
        shutil.copyfile(path, published / path.name)
    (published / CARD_JSON).write_text(json.dumps(card))
    captioner = ImageCaptioner(published / trained[0].name, SETTINGS)
    with TestClient(create_app(captioner, ServiceLimits()), base_url=BASE_URL) as published_client:
        assert published_client.get("/model").json() == card


def test_the_page_and_its_files_are_served_and_fetch_nothing_from_elsewhere(client):
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    for name in ("page.js", "page.css"):
        assert f"/page/{name}" in page.text
        assert client.get(f"/page/{name}").status_code == 200
    for path in PAGE.iterdir():
        assert "//" not in path.read_text().replace("// ", ""), f"{path.name} links outside"


def png_bytes(size: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (90, 90, 90)).save(buffer, format="PNG")
    return buffer.getvalue()


def truncated_jpeg(trained) -> bytes:
    data = trained[1][-1].read_bytes()
    return data[:len(data) // 2]


def chunks(data: bytes, size: int = 65536):
    for start in range(0, len(data), size):
        yield data[start:start + size]


@pytest.mark.parametrize(("request_arguments", "status", "error"), [
    (lambda trained: {"files": {"file": ("notes.jpg", CORRUPT_BYTES)}},
     400, "not an image Pillow can read"),
    (lambda trained: {"files": {"file": ("half.jpg", truncated_jpeg(trained))}},
     400, "OSError: image file is truncated"),
    (lambda trained: {"content": b""}, 400, "the upload is empty"),
    (lambda trained: {"data": {"caption": "x"}, "files": {"other": ("a.png", png_bytes((8, 8)))}},
     400, "no image: send it in a form field named 'file' or as the request body"),
    (lambda trained: {"content": b"/etc/hostname"}, 400, "not an image Pillow can read"),
    (lambda trained: {"data": {"caption": "x" * 2000}, "files": {"file": ("a.png", png_bytes((8, 8)))}},
     400, "unreadable form: Part exceeded maximum size of 1KB."),
    (lambda trained: {"files": {"file": ("big.png", b"\0" * (MAX_UPLOAD + 1))}},
     413, f"the upload is {MAX_UPLOAD + 1} bytes, more than the {MAX_UPLOAD} bytes allowed"),
    (lambda trained: {"content": b"\0" * (MAX_UPLOAD + 1)},
     413, f"the upload is {MAX_UPLOAD + 1} bytes, more than the {MAX_UPLOAD} bytes allowed"),
    # No Content-Length: the body is counted as it streams in.
    (lambda trained: {"content": chunks(b"\0" * (3 * MAX_UPLOAD))},
     413, f"the upload is over {MAX_UPLOAD} bytes, more than the {MAX_UPLOAD} bytes allowed"),
    (lambda trained: {"files": {"file": ("wide.png", png_bytes((8000, 6000)))}},
     413, "too large to decode: 8000x6000 pixels"),
], ids=["not-an-image", "truncated", "empty", "no-file-field", "a-path", "long-text-field",
        "form-over-cap",
        "body-over-cap", "stream-over-cap", "too-many-pixels"])
def test_bad_requests_are_refused_with_a_json_error_and_serving_goes_on(
        client, trained, expected, request_arguments, status, error):
    answer = client.post("/caption", **request_arguments(trained))
    assert answer.status_code == status
    assert answer.json()["error"].startswith(error)
    path = trained[1][0]
    assert post_file(client, path).json()["caption"] == expected[path.name]


def test_a_client_named_path_is_never_read(client, trained, expected):
    path = trained[1][0]
    answer = post_file(client, path, name="/etc/passwd")
    assert (answer.json()["image"], answer.json()["caption"]) == ("/etc/passwd", expected[path.name])


def test_concurrent_requests_are_batched_and_each_gets_its_own_caption(captioner, trained, expected):
    batch_sizes = []
    caption_pixels = captioner.caption_pixels

    def recorded(pixels):
        batch_sizes.append(len(pixels))
        return caption_pixels(pixels)

    pictures = trained[1] * 2
    limits = ServiceLimits(max_upload_bytes=MAX_UPLOAD, batch_window_s=0.05)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(captioner, "caption_pixels", recorded)
        with serving(captioner, limits) as url, ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(
                lambda path: requests.post(f"{url}/caption", timeout=60,
                                           files={"file": (path.name, path.read_bytes())}),
                pictures))
    assert [answer.json()["caption"] for answer in answers] == [expected[p.name] for p in pictures]
    assert sum(batch_sizes) == len(pictures)
    assert max(batch_sizes) > 1 and max(batch_sizes) <= captioner.extractor.batch_size


def test_a_lone_item_is_not_held_for_the_window_but_announced_ones_are_awaited():
    batches = []
    batcher = MicroBatcher(lambda items: batches.append(list(items)) or list(items), max_batch=8,
                           window_s=5.0)
    started = time.monotonic()
    assert batcher.submit("lone").result(10) == "lone"
    assert time.monotonic() - started < 1.0
    with batcher.arriving():
        first = batcher.submit("first")
        time.sleep(0.3)  # the second is still on its way: the worker waits for it
        second = batcher.submit("second")
    assert (first.result(10), second.result(10)) == ("first", "second")
    batcher.close()
    assert batches == [["lone"], ["first", "second"]]


def test_a_failed_batch_fails_its_requests_and_the_worker_goes_on():
    def work(items):
        if "bad" in items:
            raise ValueError("cannot caption")
        return items

    batcher = MicroBatcher(work, max_batch=1, window_s=0.0)
    with pytest.raises(ValueError, match="cannot caption"):
        batcher.submit("bad").result(10)
    assert batcher.submit("good").result(10) == "good"
    batcher.close()


def test_images_past_max_queue_get_503_and_the_service_recovers(captioner, trained, expected):
    release = threading.Event()
    started = threading.Event()
    caption_pixels = captioner.caption_pixels

    def blocked(pixels):
        started.set()
        release.wait(60)
        return caption_pixels(pixels)

    path = trained[1][0]
    limits = ServiceLimits(max_upload_bytes=MAX_UPLOAD, max_queue=2, batch_window_s=0.0)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(captioner, "caption_pixels", blocked)
        with serving(captioner, limits) as url, ThreadPoolExecutor(2) as pool:
            def send():
                return requests.post(f"{url}/caption", timeout=60,
                                     files={"file": (path.name, path.read_bytes())})
            working = pool.submit(send)  # taken by the worker, which blocks
            assert started.wait(30)
            waiting = pool.submit(send)  # waits for the worker
            deadline = time.monotonic() + 60
            while requests.get(f"{url}/health", timeout=10).json()["waiting"] < 1:
                assert time.monotonic() < deadline, "the second request never waited"
                time.sleep(0.01)
            refused = send()
            assert refused.status_code == 503
            assert refused.json()["error"] == "busy: 2 images are waiting or being captioned; try again"
            assert refused.headers["retry-after"] == "1"
            release.set()
            assert working.result().json()["caption"] == expected[path.name]
            assert waiting.result().json()["caption"] == expected[path.name]
            assert send().status_code == 200


def test_a_large_upload_form_or_body_is_spooled_only_in_the_temporary_folder(captioner, trained, tmp_path,
                                                                monkeypatch):
    spool = tmp_path / "temporary"
    spool.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spool))
    monkeypatch.chdir(tmp_path)
    before = sorted(trained[0].parent.rglob("*"))
    noise = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (800, 800, 3), np.uint8)).save(
        noise, format="PNG")
    assert len(noise.getvalue()) > SPOOL_BYTES
    limits = ServiceLimits(max_upload_bytes=4_000_000)
    with TestClient(create_app(captioner, limits), base_url=BASE_URL) as large_client:
        as_form = large_client.post("/caption", files={"file": ("noise.png", noise.getvalue())})
        as_body = large_client.post("/caption", content=noise.getvalue())
    assert as_form.status_code == as_body.status_code == 200
    assert as_form.json()["caption"] == as_body.json()["caption"]
    assert sorted(trained[0].parent.rglob("*")) == before
    assert [path.name for path in tmp_path.iterdir()] == ["temporary"]
