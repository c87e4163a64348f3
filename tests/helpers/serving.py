"""A small captioner trained on drawn pictures' real EfficientNet-Lite0 features, the decoding
settings it is used with, predict's captions of files, and the service run on a local port."""

from __future__ import annotations

import contextlib
import io
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import uvicorn

from captioner.core import params
from captioner.core.text import END_ID, SPECIAL_TOKENS, START_ID
from captioner.inference.captioning import ImageCaptioner
from captioner.inference.limits import ServiceLimits
from captioner.inference.predict import predict
from captioner.inference.service import server_config
from captioner.inputs.features import FeatureExtractor
from captioner.model.artifacts import save_model
from captioner.training.loop import compiled_captioner
from tests.helpers.datasets import COLOURS, SHAPES, draw
from tests.helpers.network import free_port
from tests.helpers.training import tiny_config

SETTINGS = params.DecodingSettings(beam_size=3, max_length=8, length_penalty=0.5)
VOCABULARY = [*SPECIAL_TOKENS, "a", *COLOURS, *SHAPES]
CNN_BATCH = 4


def drawn_pictures(folder: Path) -> list[Path]:
    """Twelve 224x224 PNGs, a shape of each colour on white, named `{colour}_{shape}.png`."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for colour in COLOURS:
        for shape in SHAPES:
            path = folder / f"{colour}_{shape}.png"
            draw(shape, colour, "white", rng, size=(224, 224)).save(path)
            paths.append(path)
    return paths


def trained_model(folder: Path) -> tuple[Path, list[Path]]:
    """A captioner trained until it says "a {colour} {shape}" of the drawn pictures, saved as the
    train stage saves one, and the pictures."""
    pictures = drawn_pictures(folder / "pictures")
    extractor = FeatureExtractor("efficientnet_lite0", "imagenet", CNN_BATCH)
    features = extractor.extract(pictures).features.astype(np.float32)
    tokens = np.array([[START_ID, VOCABULARY.index("a"), VOCABULARY.index(path.stem.split("_")[0]),
                        VOCABULARY.index(path.stem.split("_")[1]), END_ID] for path in pictures])
    embedding = np.random.default_rng(0).normal(size=(len(VOCABULARY), 8)).astype(np.float32)
    model = compiled_captioner(tiny_config(units=32, dropout=0.0, learning_rate=0.01), embedding,
                               feature_shape=extractor.feature_shape)
    model.fit([features, tokens[:, :-1]], tokens[:, 1:], epochs=60, batch_size=12, verbose=0)
    path = folder / "model.keras"
    save_model(model, path, VOCABULARY, extractor.description())
    return path, pictures


def predicted(model: Path, images: list[Path]) -> dict[str, str]:
    """`python -m captioner predict --json`'s caption of each image, by file name."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert predict([str(path) for path in images], model, SETTINGS, 64, as_json=True) == 0
    return {Path(entry["image"]).name: entry["caption"] for entry in json.loads(printed.getvalue())}


@contextlib.contextmanager
def serving(captioner: ImageCaptioner, limits: ServiceLimits) -> Iterator[str]:
    """Runs the service as `python -m captioner serve` does (its uvicorn configuration: Host
    names, connection deadlines and cap) on a free port of 127.0.0.1 in a thread; yields its URL."""
    server = uvicorn.Server(server_config(captioner, limits, "127.0.0.1", free_port()))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{server.config.port}"
    finally:
        server.should_exit = True
        thread.join(30)
