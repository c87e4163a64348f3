"""SIGKILL at any moment leaves every stage output whole: the old version or the new one, never a
partial file.

Each test runs one stage as a subprocess in a project folder of its own, holding inputs the test
writes, under tests/scripts/sigkill.py, which logs the stage's writes and output renames and kills
it at a chosen one. In a fresh project, then again with a param or an input changed so that the
outputs change: a run in a copy of the project lists the outputs the stage writes to; one run is
killed inside its first write to each of them (half the data on disk); then runs are killed just
before their first, second, ... output rename until one completes. Every kill must land (a run that
finishes instead fails the test), and each phase has kills of both kinds.

After every kill, each output the stage declares in dvc.yaml (outs, metrics and plots) must be one
of the complete versions, or absent where that is whole too (in the fresh project, or a folder
between the two renames that swap it), and nothing visible may be left beside it; the final
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
import shutil
import signal
import subprocess
import sys
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
from tests.helpers.archives import make_zip
from tests.helpers.http_server import serve_directory
from tests.helpers.project import (
    ROOT,
    environment,
    params_only_project,
    place_builtin_pretrained,
    set_params,
)

STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
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
    """Runs one stage in a project under tests/scripts/sigkill.py, kills it at chosen moments and
    checks what each kill left."""

    def __init__(self, project: Path, module: str, outputs: list[str]) -> None:
        self.project, self.module, self.outputs = project, module, outputs
        self.after_kills: list[tuple[str, dict[str, object]]] = []
        self.inputs = visible_files(project)
        self.log = project.parent / f"{project.name}-events.log"
        scratch = project.parent / f"{project.name}-tmp"
        scratch.mkdir(exist_ok=True)
        self.environment = {**environment(), "PYTHONPATH": str(ROOT), "TMPDIR": str(scratch),
                            "TF_CPP_MIN_LOG_LEVEL": "2"}

    @classmethod
    def for_stage(cls, project: Path, stage: str) -> Killer:
        return cls(project, STAGES[stage]["cmd"].removeprefix("python -m "), declared_outputs(stage))

    def inputs_changed(self) -> None:
        """Takes the project's current visible files, outputs aside, as the stage's inputs."""
        self.inputs = {file for file in visible_files(self.project) if not self._in_outputs(file)}

    def run(self, kill: str, project: Path | None = None) -> tuple[bool, list[str]]:
        """Runs the stage with `kill` (see tests/scripts/sigkill.py): whether it ran to the end, and
        the events it logged. A kill is recorded with what it left."""
        self.log.unlink(missing_ok=True)
        command = [sys.executable, "-m", "tests.scripts.sigkill", str(self.log), kill,
                   os.pathsep.join(self.outputs), self.module]
        result = subprocess.run(command, cwd=project or self.project, env=self.environment,
                                capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
        events = self.log.read_text(encoding="utf-8").splitlines() if self.log.exists() else []
        if result.returncode == -signal.SIGKILL:
            landed = [event.removeprefix("killed ") for event in events if event.startswith("killed ")]
            assert landed, f"{self.module} died of a SIGKILL the harness did not send"
            self._record(landed[-1])
            return False, events
        assert result.returncode == 0, f"{self.module} failed:\n{result.stderr}"
        return True, events

    def outputs_written(self) -> list[str]:
        """The outputs a complete run writes to from Python, in order of first write: counted on a
        run in a copy of the project, which is then removed."""
        copy = self.project.parent / f"{self.project.name}-count"
        shutil.copytree(self.project, copy, symlinks=True)
        try:
            completed, events = self.run("none", project=copy)
        finally:
            shutil.rmtree(copy)
        assert completed, f"{self.module} was killed without being asked to"
        written = [event.split(" ", 2)[1] for event in events if event.startswith("write ")]
        return list(dict.fromkeys(output for output in written if output != "-"))

    def kill_everywhere(self) -> int:
        """Kills one run inside the first write to each output, then runs before their 1st, 2nd, ...
        output rename until one completes; each kill must land. Returns the number of rename kills."""
        written = self.outputs_written()
        assert written, f"{self.module} writes no output from Python: no write to kill it inside"
        for output in written:
            completed, _ = self.run(f"write:{output}")
            assert not completed, f"{self.module} finished before it was killed inside a write of {output}"
        for rename in itertools.count(1):
            completed, _ = self.run(f"rename:{rename}")
            if completed:
                return rename - 1

    def assert_outputs_whole(self, *complete: dict[str, object], fresh: bool) -> None:
        """Every output after every kill so far is one of the `complete` versions, or absent where
        that is whole too: in a fresh project, or for a folder being swapped for its new version."""
        for moment, taken in self.after_kills:
            for output in self.outputs:
                versions = [version[output] for version in complete]
                if fresh or all(isinstance(version, dict) for version in versions):
                    versions.append(None)
                assert taken[output] in versions, \
                    f"{self.module} killed {moment}: {output} is partial, not a complete version"
        self.after_kills.clear()

    def _in_outputs(self, file: str) -> bool:
        return any(file == output or file.startswith(f"{output}/") for output in self.outputs)

    def _record(self, moment: str) -> None:
        left = {file for file in visible_files(self.project) - self.inputs
                if not self._in_outputs(file)}
        assert not left, f"{self.module} killed {moment} left visible files {sorted(left)}"
        self.after_kills.append((moment, snapshot(self.project, self.outputs)))


def exercise(killer: Killer, change: Callable[[Path], None]) -> None:
    """Kills a fresh run, then a rerun with `change` applied, at every moment the module doc lists."""
    renames = killer.kill_everywhere()
    first = snapshot(killer.project, killer.outputs)
    assert None not in first.values(), f"a complete run wrote {first}"
    killer.assert_outputs_whole(first, fresh=True)
    assert renames, f"{killer.module} renamed no output into place: no rename to kill it before"

    change(killer.project)
    killer.inputs_changed()
    renames = killer.kill_everywhere()
    second = snapshot(killer.project, killer.outputs)
    assert second[killer.outputs[0]] != first[killer.outputs[0]], "the change changed nothing"
    killer.assert_outputs_whole(first, second, fresh=False)
    assert renames, f"{killer.module} renamed no output into place: no rename to kill it before"
    assert hidden_entries(killer.project) == []


@pytest.mark.parametrize("how", ["atomic", "in place"])
def test_the_harness_lands_its_kills_and_sees_a_partial_output(tmp_path, how):
    project = tmp_path / "project"
    project.mkdir()
    (project / "input.txt").write_text(f"{how}\n" + "x" * 4096)
    killer = Killer(project, "tests.scripts.one_output", ["out/result.txt"])

    def change(project: Path) -> None:
        (project / "input.txt").write_text(f"{how}\n" + "y" * 4096)

    if how == "atomic":
        exercise(killer, change)
    else:
        with pytest.raises(AssertionError, match="killed inside a write of out/result.txt: "
                                                 "out/result.txt is partial"):
            exercise(killer, change)


# --- inputs the tests write --------------------------------------------------------------

def project_with(tmp_path: Path, changes: dict[str, dict]) -> Path:
    project = params_only_project(tmp_path / "project", changes)
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




def write_raw_text(project: Path, images: list[str]) -> None:
    folder = project / "data/raw/text"
    folder.mkdir(parents=True)
    for name, content in text_files(images, seed=0).items():
        (folder / name).write_bytes(content)


# --- one test per stage --------------------------------------------------------------------

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

        exercise(Killer.for_stage(project_with(tmp_path, urls("a")), "download"),
                 lambda project: set_params(project, urls("b")))


def test_tokenize_survives_sigkill(tmp_path):
    project = project_with(tmp_path, {"tokenize": {"min_count": 1, "val_images": 4}})
    images = image_names(24)
    write_images(project / "data/raw/images", images, seed=0)
    write_raw_text(project, images)
    exercise(Killer.for_stage(project, "tokenize"),
             lambda project: set_params(project, {"tokenize": {"seed": 7}}))


def test_embed_survives_sigkill(tmp_path):
    project = project_with(tmp_path, {"embed": {"dim": 8, "epoch": 2}})
    captions = caption_texts(image_names(20), seed=0)
    write_json(project / "data/captions/vocab.json", [*SPECIAL_TOKENS, *WORDS])
    write_jsonl(project / "data/captions/train.jsonl",
                [{"image": image, "captions": texts, "tokens": []}
                 for image, texts in captions.items()])
    exercise(Killer.for_stage(project, "embed"), lambda project: set_params(project, {"embed": {"dim": 12}}))


@pytest.mark.long
def test_extract_features_survives_sigkill(tmp_path):
    # Its output-changing params (backbone, weights) have no offline, deterministic alternative to
    # the default, so the rerun gets more images instead.
    project = project_with(tmp_path, {"extract_features": {"batch_size": 8}})
    write_images(project / "data/raw/images", image_names(16), seed=0)
    exercise(Killer.for_stage(project, "extract_features"),
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
    (project / "metrics/train").mkdir(parents=True)
    (project / "metrics/train/epochs.tsv").write_text("epoch\tloss\tval_loss\tval_bleu4\n1\t3\t3\t0\n")
    exercise(Killer.for_stage(project, "evaluate"), lambda project: set_params(
        project, {"evaluate": {"beam_size": 1, "report_images": 3}}))
