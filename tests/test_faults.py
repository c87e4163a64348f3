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

from pathlib import Path

import numpy as np
import pytest

from captioner.core.files import write_json, write_jsonl, write_npy
from captioner.core.text import SPECIAL_TOKENS
from captioner.model.artifacts import save_model
from captioner.model.network import build_captioner
from tests.helpers.archives import make_zip, write_files
from tests.helpers.datasets import flickr8k_text_files, write_pictures
from tests.helpers.http_server import serve_directory
from tests.helpers.images import noise_jpeg
from tests.helpers.killing import Killer, kill_at_every_moment
from tests.helpers.project import params_only_project, place_builtin_pretrained, set_params

WORDS = ("a", "dog", "cat", "runs", "on", "the", "grass", "red", "ball", "child", "jumps", "water")


@pytest.mark.parametrize("how", ["atomic", "in place"])
def test_the_harness_lands_its_kills_and_sees_a_partial_output(tmp_path, how):
    project = tmp_path / "project"
    project.mkdir()
    (project / "input.txt").write_text(f"{how}\n" + "x" * 4096)
    killer = Killer(project, "tests.scripts.one_output", ["out/result.txt"])

    def change(project: Path) -> None:
        (project / "input.txt").write_text(f"{how}\n" + "y" * 4096)

    if how == "atomic":
        kill_at_every_moment(killer, change)
    else:
        with pytest.raises(AssertionError, match="killed inside a write of out/result.txt: "
                                                 "out/result.txt is partial"):
            kill_at_every_moment(killer, change)


# --- inputs the tests write --------------------------------------------------------------

def project_with(tmp_path: Path, changes: dict[str, dict]) -> Path:
    project = params_only_project(tmp_path / "project", changes)
    place_builtin_pretrained(project)
    return project


def image_names(count: int, start: int = 0) -> list[str]:
    return [f"{index:04d}_photo.jpg" for index in range(start, start + count)]


def caption_texts(images: list[str], seed: int) -> dict[str, list[str]]:
    """Five captions of random words per image."""
    rng = np.random.default_rng(seed)
    return {image: [" ".join(rng.choice(WORDS, size=rng.integers(3, 8))) + " ." for _ in range(5)]
            for image in images}


def text_files(images: list[str], seed: int) -> dict[str, bytes]:
    """Flickr8k's token file and split lists (three quarters train, the rest test, no dev)."""
    cut = len(images) * 3 // 4
    return flickr8k_text_files(caption_texts(images, seed),
                               {"train": images[:cut], "dev": [], "test": images[cut:]})


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

        kill_at_every_moment(Killer.for_stage(project_with(tmp_path, urls("a")), "download"),
                             lambda project: set_params(project, urls("b")))


def test_tokenize_survives_sigkill(tmp_path):
    project = project_with(tmp_path, {"tokenize": {"min_count": 1, "val_images": 4}})
    images = image_names(24)
    write_pictures(project / "data/raw/images", images)
    write_files(project / "data/raw/text", text_files(images, seed=0))
    kill_at_every_moment(Killer.for_stage(project, "tokenize"),
                         lambda project: set_params(project, {"tokenize": {"seed": 7}}))


def test_embed_survives_sigkill(tmp_path):
    project = project_with(tmp_path, {"embed": {"dim": 8, "epoch": 2}})
    captions = caption_texts(image_names(20), seed=0)
    write_json(project / "data/captions/vocab.json", [*SPECIAL_TOKENS, *WORDS])
    write_jsonl(project / "data/captions/train.jsonl",
                [{"image": image, "captions": texts, "tokens": []}
                 for image, texts in captions.items()])
    kill_at_every_moment(Killer.for_stage(project, "embed"),
                         lambda project: set_params(project, {"embed": {"dim": 12}}))


@pytest.mark.long
def test_extract_features_survives_sigkill(tmp_path):
    # Its output-changing params (backbone, weights) have no offline, deterministic alternative to
    # the default, so the rerun gets more images instead.
    project = project_with(tmp_path, {"extract_features": {"batch_size": 8}})
    write_pictures(project / "data/raw/images", image_names(16))
    kill_at_every_moment(Killer.for_stage(project, "extract_features"),
                         lambda project: write_pictures(project / "data/raw/images", image_names(4, 16),
                                                        seed=1))


@pytest.mark.long
def test_evaluate_survives_sigkill(tmp_path):
    project = project_with(tmp_path, {"evaluate": {"beam_size": 2, "max_length": 6,
                                                   "batch_size": 4, "report_images": 2,
                                                   "retrieval_k": [1, 2]}})
    images = image_names(6)
    vocabulary = [*SPECIAL_TOKENS, *WORDS]
    write_pictures(project / "data/raw/images", images)
    # The retrieval baseline reads the train and val splits too; here all three hold every image.
    for split in ("train", "val", "test"):
        write_jsonl(project / f"data/captions/{split}.jsonl",
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
    kill_at_every_moment(Killer.for_stage(project, "evaluate"), lambda project: set_params(
        project, {"evaluate": {"beam_size": 1, "report_images": 3}}))
