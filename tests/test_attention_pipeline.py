"""The attention decoder through the pipeline: extract_features.grid writes the regions, an
ensemble of a merge and an attention member trains on them and is evaluated, report.html shows
where each word of the sample captions looked, predict captions and draws the same, and the
SavedModel export captions as predict does."""

from __future__ import annotations

import base64
import io
import re
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from captioner.core.files import read_jsonl
from tests.helpers.project import dvc, run, set_params, stages_run, up_to_date

PREDICT = [sys.executable, "-m", "captioner", "predict"]


@pytest.fixture(scope="module")
def attention_project(built_project, tmp_path_factory):
    project = built_project.clone(tmp_path_factory.mktemp("attention") / "project")
    set_params(project, {"extract_features": {"grid": True},
                         "train": {"ensemble": 2, "decoder": ["merge", "attention"]}})
    output = dvc("repro", cwd=project).stdout
    return project, output


@pytest.mark.slow
def test_the_grid_reruns_extraction_and_what_follows_then_all_is_up_to_date(attention_project):
    project, output = attention_project
    assert stages_run(output) == ["extract_features", "train", "evaluate", "publish"]
    grid = np.load(project / "data/features/grid.npy", mmap_mode="r")
    pooled = np.load(project / "data/features/features.npy")
    assert grid.shape == (len(pooled), 49, pooled.shape[1])
    assert "train: member 2 (seed 1042): best epoch" in output
    assert up_to_date(project)


@pytest.mark.slow
def test_the_report_shows_where_each_word_of_each_sample_caption_looked(attention_project):
    project, _ = attention_project
    page = (project / "data/evaluation/report.html").read_text()
    assert "<h1>Where each word looked</h1>" in page
    figures = re.findall(r'<figure class=attention><img src="data:image/png;base64,([^"]+)" '
                         r'alt="([^"]*)">', page)
    samples = (project / "data/evaluation/samples.md").read_text()
    assert len(figures) == samples.count("## `") >= 1
    # Each figure's caption is the ensemble's, the chosen row of the epoch table.
    chosen = re.findall(r"\| ensemble of 2 \(chosen\) \| [^|]+ \| (.*) \|", samples)
    assert [caption for _, caption in figures] == chosen
    for data, caption in figures:
        drawn = Image.open(io.BytesIO(base64.b64decode(data)))
        assert drawn.size == (5 * 160, -(-(1 + len(caption.split())) // 5) * (160 + 24))


@pytest.mark.slow
def test_predict_and_the_export_caption_as_evaluate_did(attention_project, tmp_path):
    project, _ = attention_project
    rows = read_jsonl(project / "data/evaluation/captions.jsonl")[:3]
    images = [f"data/raw/images/{row['image']}" for row in rows]
    result = run([*PREDICT, *images, "--attention-maps", str(tmp_path / "maps")], project)
    assert [line.split("\t")[:2] for line in result.stdout.splitlines()] == [
        [image, row["caption"]] for image, row in zip(images, rows, strict=True)]
    assert len(list((tmp_path / "maps").glob("*.png"))) == 3
    assert result.stderr == ""

    run([sys.executable, "-m", "captioner", "export", "--out", str(tmp_path / "export")], project)
    serve = tf.saved_model.load(str(tmp_path / "export")).signatures["serving_default"]
    encoded = tf.constant([(project / image).read_bytes() for image in images])
    captions = [caption.decode() for caption in serve(images=encoded)["caption"].numpy()]
    assert captions == [row["caption"] for row in rows]
