"""The whole pipeline under DVC on a drawn Flickr8k-layout collection served over local HTTP, with
one undecodable image in each split; predict on its model."""

from __future__ import annotations

import csv
import json
import re
import sys

import numpy as np
import pytest
import yaml

from captioner.core import params
from captioner.core.files import read_json, read_jsonl
from captioner.model.java_scorers import java
from captioner.model.scoring import score_captions
from captioner.reporting.evaluation import metric_names
from tests.conftest import CORRUPT
from tests.helpers.project import FAST_PARAMS, ROOT, dvc, run, stages_run, up_to_date

pytestmark = pytest.mark.slow  # every test here runs real DVC commands

# Cross-entropy epochs, then self-critical ones.
SELF_CRITICAL_EPOCHS = FAST_PARAMS["train"]["self_critical_epochs"]
EPOCHS = FAST_PARAMS["train"]["epochs"] + SELF_CRITICAL_EPOCHS
PREDICT = [sys.executable, "-m", "captioner", "predict"]
STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


@pytest.fixture
def project(built_project):
    return built_project.path


def test_repro_embed_builds_the_data_stages(built_project):
    assert stages_run(built_project.embed_output) == ["download", "tokenize", "pretrained", "embed"]
    data = read_json(built_project.path / "data/records/tokenize.json")
    sizes = {name: len(images) for name, images in built_project.collection.splits.items()}
    assert data["splits"] == {"train": {"images": sizes["train"], "captions": 5 * sizes["train"]},
                              "val": {"images": sizes["dev"], "captions": 5 * sizes["dev"]},
                              "test": {"images": sizes["test"], "captions": 5 * sizes["test"]}}
    vocabulary = read_json(built_project.path / "data/captions/vocab.json")
    matrix = np.load(built_project.path / "data/embeddings/matrix.npy")
    assert matrix.shape == (len(vocabulary), 32) == (data["vocab_size"], 32)


def test_undecodable_images_are_left_out_counted_and_the_pipeline_finishes(built_project):
    path = built_project.path
    assert stages_run(built_project.repro_output) == ["extract_features", "train", "evaluate",
                                                       "publish"]
    features = read_json(path / "data/records/extract_features.json")
    assert sorted(bad["file"] for bad in features["bad_images"]) == sorted(CORRUPT)
    assert np.load(path / "data/features/features.npy").shape == (60 - len(CORRUPT), 1280)
    summary = read_json(path / "data/records/train/metrics.json")
    assert summary["images_without_features"] == {"train": 1, "val": 1}
    scores = read_json(path / "metrics/eval.json")
    assert (scores["test_images"], scores["test_images_without_features"]) == (9, 1)
    warnings = [line for line in built_project.repro_output.splitlines()
                if line.startswith("warning: data/features: no features")]
    assert len(warnings) == 2
    assert "1 train, 1 val images" in warnings[0] and "1 test images" in warnings[1]


# What `dvc repro` prints around the stages, and what a stage prints: lines of its own, warnings
# and progress bars. A library's notice (TensorFlow's start-up lines, a deprecation) matches none.
DVC_LINES = re.compile(r"|Stage '\w+' didn't change, skipping|Running stage '\w+':|> python -m stages\.\w+"
                       r"|(Generating|Updating) lock file 'dvc.lock'|To track the changes with git, run:"
                       r"|\tgit add dvc.lock|To enable auto staging, run:|\tdvc config core.autostage true"
                       r"|Use `dvc push` to send your updates to remote storage.")
STAGE_LINES = re.compile(rf"({'|'.join(STAGES)}): .+|warning: .+|(features|decoding): +\d+%\|.*")


def test_stages_print_only_their_own_lines(built_project):
    for output in (built_project.embed_output, built_project.repro_output):
        foreign = [line for line in output.splitlines()
                   if not DVC_LINES.fullmatch(line) and not STAGE_LINES.fullmatch(line)]
        assert foreign == [], output


def test_eval_metrics_are_the_scores_of_the_written_captions(project):
    rows = read_jsonl(project / "data/evaluation/captions.jsonl")
    assert len(rows) == 9 and all(row["image"] not in CORRUPT for row in rows)
    scored = score_captions(
        {"model": {row["image"]: row["caption"] for row in rows},
         "retrieval": {row["image"]: row["retrieval_baseline"] for row in rows}},
        {row["image"]: row["references"] for row in rows}, java())
    scores, retrieved = scored["model"], scored["retrieval"]
    written = read_json(project / "metrics/eval.json")
    assert list(written)[:3] == ["bleu4", "cider", "meteor"]
    assert {name: round(value, 5) for name, value in metric_names(scores).items()} == \
        {name: written[name] for name in metric_names(scores)}
    captions = [row["caption"] for row in rows]
    assert written["distinct_words"] == len({word for caption in captions for word in caption.split()})
    assert written["distinct_captions"] == round(len(set(captions)) / len(captions), 5)
    report = (project / "data/evaluation/report.html").read_text()
    assert report.count("<figure>") == 4 and report.count("<p class='baseline'>retrieval: ") == 4
    baseline = written["retrieval_baseline"]
    assert baseline["k"] in yaml.safe_load((project / "params.yaml").read_text())["evaluate"][
        "retrieval_k"]
    assert {name: round(value, 5) for name, value in metric_names(retrieved).items()} == \
        {name: baseline[name] for name in metric_names(retrieved)}


def test_training_logs_every_epoch_numbered_from_one(project):
    with open(project / "metrics/train/epochs.tsv") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    assert [int(row["epoch"]) for row in rows] == list(range(1, EPOCHS + 1))
    assert [row["phase"] for row in rows] == (["cross_entropy"] * FAST_PARAMS["train"]["epochs"]
                                              + ["self_critical"] * SELF_CRITICAL_EPOCHS)
    assert all(float(row["loss" if row["phase"] == "cross_entropy" else "reward"]) > 0
               and float(row["val_loss"]) > 0 for row in rows)
    summary = read_json(project / "data/records/train/metrics.json")
    assert summary["step"] == EPOCHS and 1 <= summary["best_epoch"] <= EPOCHS
    assert len(read_json(project / "metrics/speed/train.json")["epoch_seconds"]) == EPOCHS
    assert sorted(p.name for p in (project / "models/epochs").glob("*.keras")) == \
        [f"epoch_{n:03d}.keras" for n in range(1, EPOCHS + 1)]
    assert not (project / "data/train_run").exists()


def test_a_second_repro_runs_nothing(project):
    output = dvc("repro", cwd=project).stdout
    assert stages_run(output) == []
    assert "Data and pipelines are up to date." in output
    assert up_to_date(project)


def test_predict_prints_the_caption_evaluate_wrote(project):
    rows = read_jsonl(project / "data/evaluation/captions.jsonl")[:4]
    images = [f"data/raw/images/{row['image']}" for row in rows]
    result = run([*PREDICT, *images], project)
    assert result.stdout.splitlines() == [f"{image}\t{row['caption']}"
                                          for image, row in zip(images, rows, strict=True)]
    assert result.stderr == ""


def test_predict_flags_override_the_evaluate_params(project):
    image = f"data/raw/images/{read_jsonl(project / 'data/evaluation/captions.jsonl')[0]['image']}"
    [short] = json.loads(run([*PREDICT, image, "--json", "--max-length", "1"], project).stdout)
    assert len(short["caption"].split()) == 1


def test_predict_reports_a_non_image_in_one_line_and_captions_the_rest(project):
    image = sorted((project / "data/raw/images").glob("pic_00*.jpg"))[0]
    not_image = project / "notes.jpg"
    not_image.write_text("not a picture")
    mixed = run([*PREDICT, str(image), str(not_image)], project, check=False)
    assert mixed.returncode == 1
    assert mixed.stdout.startswith(f"{image}\t")
    assert mixed.stderr.splitlines() == [f"error: {not_image}: not an image Pillow can read"]

    missing = run([*PREDICT, str(image), "--model", "nowhere/model.keras"], project, check=False)
    assert missing.returncode == 2
    assert missing.stderr.splitlines() == [
        "error: nowhere/model.keras: no such model (run `dvc repro train` first)"]


def test_predict_outside_a_project_needs_the_decoding_flags(project, tmp_path):
    image = sorted((project / "data/raw/images").glob("pic_00*.jpg"))[0]
    model = str(project / "models/model.keras")
    elsewhere = {"PYTHONPATH": str(project)}  # as for a user who points Python at the project
    refused = run([*PREDICT, str(image), "--model", model], tmp_path, check=False,
                  extra_env=elsewhere)
    assert refused.returncode == 2
    assert refused.stderr.startswith("error: params.yaml: not found in this folder")
    decoding = params.load(params.EvaluateParams, project / "params.yaml")
    flags = [f"--beam-size={decoding.beam_size}", f"--length-penalty={decoding.length_penalty}",
             f"--max-length={decoding.max_length}"]
    inside = run([*PREDICT, str(image)], project).stdout
    outside = run([*PREDICT, str(image), "--model", model, *flags], tmp_path, extra_env=elsewhere)
    assert outside.stdout == inside
