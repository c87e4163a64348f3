"""The whole pipeline under DVC on the 200-image sample mirror, served over local HTTP."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from captioner.files import read_json
from tests.project import FAST_PARAMS, dvc, run, stages_run


@pytest.fixture
def project(built_project):
    return built_project.path, built_project.embed_output, built_project.repro_output


def test_repro_embed_builds_the_data_stages(project):
    path, embed_output, _ = project
    assert stages_run(embed_output) == ["download", "tokenize", "embed"]
    data = read_json(path / "metrics/data.json")
    splits = data["splits"]
    assert splits["train"]["images"] + splits["val"]["images"] == 160
    assert splits["val"]["images"] == 20
    assert splits["test"] == {"images": 40, "captions": 200}
    assert splits["train"]["captions"] == 5 * splits["train"]["images"]
    vocabulary = read_json(path / "data/captions/vocab.json")
    matrix = np.load(path / "data/embeddings/matrix.npy")
    assert matrix.shape == (len(vocabulary), 32) == (data["vocab_size"], 32)


def test_repro_runs_the_rest_and_writes_every_metric(project):
    path, _, repro_output = project
    assert stages_run(repro_output) == ["extract_features", "train", "evaluate"]
    features = np.load(path / "data/features/features.npy")
    assert features.shape == (200, 1280) and features.dtype == np.float16
    scores = read_json(path / "metrics/eval.json")
    for key in ("bleu1", "bleu2", "bleu3", "bleu4", "cider", "rouge_l"):
        assert 0 <= scores[key] <= (10 if key == "cider" else 1)
    assert read_json(path / "metrics/speed/evaluate.json")["decode_images_per_s"] > 0
    speed = read_json(path / "metrics/speed/train.json")
    assert len(speed["epoch_seconds"]) == FAST_PARAMS["train"]["epochs"]
    assert not (path / "data/train_run").exists()
    assert scores["test_images"] == 40
    epochs = (path / "metrics/train/plots/metrics/train/loss.tsv").read_text().splitlines()
    assert len(epochs) == 1 + FAST_PARAMS["train"]["epochs"]
    assert (path / "models/epochs/epoch_002.keras").is_file()
    assert len((path / "data/evaluation/captions.jsonl").read_text().splitlines()) == 40
    assert (path / "data/evaluation/report.html").read_text().count("<figure>") == 4


def test_a_second_repro_does_nothing(project):
    path, _, _ = project
    output = dvc("repro", cwd=path).stdout
    assert stages_run(output) == []
    assert "up to date" in dvc("status", cwd=path).stdout


def test_predict_captions_an_image_and_reports_a_non_image(project):
    path, _, _ = project
    predict = [sys.executable, "-m", "captioner", "predict"]
    image = sorted((path / "data/raw/images").iterdir())[0]
    [prediction] = json.loads(run([*predict, str(image), "--json"], path).stdout)
    assert prediction["image"] == str(image)
    assert prediction["caption"] == prediction["caption"].strip()

    not_image = path / "notes.jpg"
    not_image.write_text("not a picture")
    mixed = run([*predict, str(image), str(not_image)], path, check=False)
    assert mixed.returncode == 1
    assert mixed.stdout.startswith(f"{image}\t")
    # TensorFlow prints start-up notices on stderr that no setting silences; ours start "error:".
    [error] = [line for line in mixed.stderr.splitlines() if line.startswith("error:")]
    assert error.startswith(f"error: {not_image}: ")

    missing = run([*predict, str(image), "--model", "nowhere/model.keras"], path, check=False)
    assert missing.returncode == 2
    assert missing.stderr.splitlines()[-1] == \
        "error: nowhere/model.keras: no such model (run `dvc repro train` first)"
