"""SIGKILL at any moment leaves every stage output whole: as it was, absent, or complete.

Each test runs one stage as a subprocess in a project folder of its own, holding inputs the test
writes. First a fresh run is killed just before the first rename that moves an output into place
(through tests/helpers/sigkill.py), the next run just before the second, and so on until a run completes.
Then, with a param or an input changed so that the outputs change, runs are killed after fixed
fractions of the measured run time and again before each rename, until one completes.

After every kill, each output the stage declares in dvc.yaml (outs and metrics) must be absent or
identical to one of the complete versions, and nothing visible may be left beside it; the final
complete run must leave no hidden leftovers either. The extract_features and evaluate tests start
TensorFlow a dozen times (one to two minutes each on two cores), so they are marked long; the
train stage has its own resume tests.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from captioner.captions.formats.flickr8k import SPLIT_FILES, TOKEN_FILE
from captioner.core.files import write_json, write_jsonl, write_npy
from captioner.core.text import SPECIAL_TOKENS
from captioner.model.artifacts import save_model
from captioner.model.network import build_captioner
from tests.helpers.http_server import serve_directory
from tests.helpers.project import ROOT, environment, place_builtin_pretrained, set_params

STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
FRACTIONS = (0.3, 0.6, 0.9)
TIMINGS = "metrics/speed/"  # timing metrics differ from run to run: only their keys are compared
RUN_TIMEOUT_S = 300
WORDS = ("a", "dog", "cat", "runs", "on", "the", "grass", "red", "ball", "child", "jumps", "water")


def declared_outputs(stage: str) -> list[str]:
    """The paths a stage declares in dvc.yaml as outs, metrics or plots."""
    entries = [*STAGES[stage].get("outs", []), *STAGES[stage].get("metrics", []),
               *STAGES[stage].get("plots", [])]
    return [entry if isinstance(entry, str) else next(iter(entry)) for entry in entries]


def digest(path: Path, relative: str) -> object:
    """A file's sha256, or for timing metrics their keys (or a mark that the JSON is not whole)."""
    data = path.read_bytes()
    if not relative.startswith(TIMINGS):
        return hashlib.sha256(data).hexdigest()
    try:
        return sorted(json.loads(data))
    except ValueError:
        return "not whole JSON"


def snapshot(project: Path, outputs: list[str]) -> dict[str, object]:
    """Each output's content: None when absent, a file's digest, a folder's {file: digest}."""
    state: dict[str, object] = {}
    for output in outputs:
        path = project / output
        if path.is_dir():
            state[output] = {str(file.relative_to(path)): digest(file, str(file.relative_to(project)))
                             for file in sorted(path.rglob("*")) if file.is_file()}
        else:
            state[output] = digest(path, output) if path.is_file() else None
    return state


def is_hidden(relative: Path) -> bool:
    """Whether a path inside the project has a dot-named part: no stage reads those."""
    return any(part.startswith(".") for part in relative.parts)


def hidden_entries(project: Path) -> list[str]:
    return sorted(str(p.relative_to(project)) for p in project.rglob("*")
                  if is_hidden(p.relative_to(project)))


def visible_files(project: Path) -> set[str]:
    return {str(p.relative_to(project)) for p in project.rglob("*")
            if p.is_file() and not is_hidden(p.relative_to(project))}


class Killer:
    """Runs one stage in a project, kills it at chosen moments and checks what each kill left."""

    def __init__(self, project: Path, stage: str) -> None:
        self.project, self.stage = project, stage
        self.module = STAGES[stage]["cmd"].removeprefix("python -m ")
        self.outputs = declared_outputs(stage)
        self.after_kills: list[tuple[str, dict[str, object]]] = []
        self.inputs = visible_files(project)
        scratch = project.parent / f"{project.name}-tmp"
        scratch.mkdir(exist_ok=True)
        self.environment = {**environment(), "PYTHONPATH": str(ROOT), "TMPDIR": str(scratch),
                            "TF_CPP_MIN_LOG_LEVEL": "2"}

    def inputs_changed(self) -> None:
        """Takes the project's current visible files, outputs aside, as the stage's inputs."""
        self.inputs = {file for file in visible_files(self.project) if not self._in_outputs(file)}

    def run(self, moment: str, before_rename: int = 0, after_s: float | None = None) -> bool:
        """Runs the stage, killed before its `before_rename`-th output rename or after `after_s`
        seconds; True when it ran to the end instead."""
        command = [sys.executable, "-m", self.module]
        if before_rename:
            watched = os.pathsep.join(str(self.project / output) for output in self.outputs)
            command = [sys.executable, "-m", "tests.helpers.sigkill", str(before_rename), watched,
                       self.module]
        with subprocess.Popen(command, cwd=self.project, env=self.environment, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) as process:
            try:
                _, errors = process.communicate(timeout=after_s or RUN_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                _, errors = process.communicate()
                assert after_s is not None, f"{self.module} ran over {RUN_TIMEOUT_S} s:\n{errors}"
        if process.returncode == -signal.SIGKILL:
            self._record(moment)
            return False
        assert process.returncode == 0, f"{self.module} failed:\n{errors}"
        return True

    def kill_before_each_rename(self) -> float:
        """Kills runs before their 1st, 2nd, ... output rename until one completes; its seconds."""
        for rename in itertools.count(1):
            started = time.monotonic()
            if self.run(f"before output rename {rename}", before_rename=rename):
                return time.monotonic() - started

    def kill_after(self, seconds: float) -> None:
        self.run(f"after {seconds:.2f} s", after_s=seconds)

    def assert_outputs_whole(self, *complete: dict[str, object]) -> None:
        """Every output after every kill so far is absent or one of the `complete` versions."""
        for moment, taken in self.after_kills:
            for output in self.outputs:
                allowed = [None, *(version[output] for version in complete)]
                assert taken[output] in allowed, \
                    f"{self.stage} killed {moment}: {output} is neither absent nor complete"
        self.after_kills.clear()

    def _in_outputs(self, file: str) -> bool:
        return any(file == output or file.startswith(f"{output}/") for output in self.outputs)

    def _record(self, moment: str) -> None:
        left = {file for file in visible_files(self.project) - self.inputs
                if not self._in_outputs(file)}
        assert not left, f"{self.stage} killed {moment} left visible files {sorted(left)}"
        self.after_kills.append((moment, snapshot(self.project, self.outputs)))


def exercise(project: Path, stage: str, change: Callable[[Path], None]) -> None:
    """Kills a fresh run, then a rerun with `change` applied, at every moment the module doc lists."""
    killer = Killer(project, stage)
    seconds = killer.kill_before_each_rename()
    first = snapshot(project, killer.outputs)
    assert None not in first.values(), f"a complete {stage} run wrote {first}"
    killer.assert_outputs_whole(first)

    change(project)
    killer.inputs_changed()
    for fraction in FRACTIONS:
        killer.kill_after(fraction * seconds)
    killer.kill_before_each_rename()
    second = snapshot(project, killer.outputs)
    assert second[killer.outputs[0]] != first[killer.outputs[0]], "the change changed nothing"
    killer.assert_outputs_whole(first, second)
    assert hidden_entries(project) == []


# --- inputs the tests write --------------------------------------------------------------

def project_with(tmp_path: Path, changes: dict[str, dict]) -> Path:
    project = tmp_path / "project"
    project.mkdir()
    (project / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    set_params(project, changes)
    place_builtin_pretrained(project)
    return project


def noise_jpeg(rng: np.random.Generator, size: int = 64) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buffer, "JPEG")
    return buffer.getvalue()


def write_images(folder: Path, names: list[str], seed: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for name in names:
        (folder / name).write_bytes(noise_jpeg(rng))


def image_names(count: int, start: int = 0) -> list[str]:
    return [f"{index:04d}_photo.jpg" for index in range(start, start + count)]


def caption_texts(images: list[str], seed: int) -> dict[str, list[str]]:
    """Five captions of random words per image."""
    rng = np.random.default_rng(seed)
    return {image: [" ".join(rng.choice(WORDS, size=rng.integers(3, 8))) + " ." for _ in range(5)]
            for image in images}


def text_files(images: list[str], seed: int) -> dict[str, bytes]:
    """Flickr8k's token file and split lists (three quarters train, the rest test, no dev)."""
    token_lines = [f"{image}#{number}\t{text}\n" for image, texts in caption_texts(images, seed).items()
                   for number, text in enumerate(texts)]
    cut = len(images) * 3 // 4
    lists = {"train": images[:cut], "dev": [], "test": images[cut:]}
    return {TOKEN_FILE: "".join(token_lines).encode(),
            **{SPLIT_FILES[name]: "".join(f"{i}\n" for i in ids).encode()
               for name, ids in lists.items()}}


def make_zip(path: Path, members: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in members.items():
            archive.writestr(name, content)


def write_raw_text(project: Path, images: list[str]) -> None:
    folder = project / "data/raw/text"
    folder.mkdir(parents=True)
    for name, content in text_files(images, seed=0).items():
        (folder / name).write_bytes(content)


# --- one test per stage --------------------------------------------------------------------

@pytest.mark.slow
def test_download_survives_sigkill(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    for version, count in (("a", 60), ("b", 50)):
        rng = np.random.default_rng(count)
        images = image_names(count)
        make_zip(served / f"images_{version}.zip",
                 {f"Flicker8k_Dataset/{name}": noise_jpeg(rng, 128) for name in images})
        make_zip(served / f"text_{version}.zip",
                 {f"Flickr8k_text/{name}": content
                  for name, content in text_files(images, seed=count).items()})
    with serve_directory(served) as server:
        def urls(version: str) -> dict[str, dict]:
            return {"download": {"images_url": server.url_for(f"images_{version}.zip"),
                                 "text_url": server.url_for(f"text_{version}.zip")}}

        exercise(project_with(tmp_path, urls("a")), "download",
                 lambda project: set_params(project, urls("b")))


@pytest.mark.slow
def test_tokenize_survives_sigkill(tmp_path):
    project = project_with(tmp_path, {"tokenize": {"min_count": 1, "val_images": 4}})
    images = image_names(24)
    write_images(project / "data/raw/images", images, seed=0)
    write_raw_text(project, images)
    exercise(project, "tokenize",
             lambda project: set_params(project, {"tokenize": {"seed": 7}}))


@pytest.mark.slow
def test_embed_survives_sigkill(tmp_path):
    project = project_with(tmp_path, {"embed": {"dim": 8, "epoch": 2}})
    captions = caption_texts(image_names(20), seed=0)
    write_json(project / "data/captions/vocab.json", [*SPECIAL_TOKENS, *WORDS])
    write_jsonl(project / "data/captions/train.jsonl",
                [{"image": image, "captions": texts, "tokens": []}
                 for image, texts in captions.items()])
    exercise(project, "embed", lambda project: set_params(project, {"embed": {"dim": 12}}))


@pytest.mark.long
def test_extract_features_survives_sigkill(tmp_path):
    # Its output-changing params (backbone, weights) have no offline, deterministic alternative to
    # the default, so the rerun gets more images instead.
    project = project_with(tmp_path, {"extract_features": {"batch_size": 8}})
    write_images(project / "data/raw/images", image_names(16), seed=0)
    exercise(project, "extract_features",
             lambda project: write_images(project / "data/raw/images", image_names(4, 16), 1))


@pytest.mark.long
def test_evaluate_survives_sigkill(tmp_path):
    project = project_with(tmp_path, {"evaluate": {"beam_size": 2, "max_length": 6,
                                                   "batch_size": 4, "report_images": 2}})
    images = image_names(6)
    vocabulary = [*SPECIAL_TOKENS, *WORDS]
    write_images(project / "data/raw/images", images, seed=0)
    write_jsonl(project / "data/captions/test.jsonl",
                [{"image": image, "captions": texts, "tokens": []}
                 for image, texts in caption_texts(images, seed=0).items()])
    rng = np.random.default_rng(0)
    write_npy(project / "data/features/features.npy",
              rng.normal(size=(len(images), 16)).astype(np.float16))
    write_json(project / "data/features/images.json", images)
    model = build_captioner(rng.normal(size=(len(vocabulary), 4)).astype(np.float32),
                            feature_dim=16, units=8, rnn="gru", dropout=0.0, train_embedding=False)
    save_model(model, project / "models/model.keras", vocabulary,
               {"backbone": "efficientnet_lite0", "weights": "imagenet", "dim": 16})
    # What train writes beside the model for the epoch table: one epoch, the chosen one.
    write_json(project / "data/records/train/metrics.json", {"best_epoch": 1})
    (project / "metrics/train/epochs.tsv").write_text("epoch\tloss\tval_loss\tval_bleu4\n1\t3\t3\t0\n")
    exercise(project, "evaluate", lambda project: set_params(
        project, {"evaluate": {"beam_size": 1, "report_images": 3}}))
