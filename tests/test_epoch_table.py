"""The epoch table: fixed test images captioned by every epoch's model, in report.html, samples.md
and one PNG plot per image. Unit tests of choosing, captioning inputs and drawing, then the table
the pipeline wrote on the built project."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image, ImageFont

from captioner.core import params
from captioner.core.errors import PipelineError
from captioner.core.files import read_json, read_jsonl
from captioner.core.paths import ModelFolder
from captioner.model.splits import Split
from captioner.reporting.epoch_table import (
    EpochRow,
    EpochTable,
    choose_samples,
    epoch_models,
    read_logged_epochs,
)
from captioner.reporting.report import epoch_table_html, render_samples_markdown
from captioner.reporting.sample_plots import CHOSEN_BACKGROUND, WIDTH, draw_sample, plot_name, wrap
from tests.helpers.project import FAST_PARAMS, ROOT, dvc, run, set_params

DEFAULT_SAMPLES = yaml.safe_load((ROOT / "params.yaml").read_text())["evaluate"]["sample_images"]
PREDICT = [sys.executable, "-m", "captioner", "predict"]
TEST_SPLIT = Path("data/captions/test.jsonl")


def split_of(images: list[str], without_features: list[str]) -> Split:
    return Split([{"image": image} for image in images], np.zeros((len(images), 4)), without_features)


def a_table(tmp_path: Path, captions: list[list[str]], chosen: int, unsaved: list[int]) -> EpochTable:
    """A table of plain-colour images a.jpg, b.jpg, ... with one row of captions per epoch from 1."""
    images = [f"{chr(ord('a') + column)}.jpg" for column in range(len(captions[0]))]
    for image in images:
        Image.new("RGB", (200, 150), (30, 120, 200)).save(tmp_path / image)
    rows = [EpochRow(str(epoch), 0.01 * epoch, epoch == chosen, row)
            for epoch, row in enumerate(captions, start=1)]
    return EpochTable(images, rows, unsaved, "beam size 3, length penalty 0.5, at most 30 words",
                      Path("models/model.keras"))


def test_a_count_takes_the_first_test_images_and_a_list_its_images_in_order():
    split = split_of(["x.jpg", "y.jpg", "z.jpg"], without_features=["bad.jpg"])
    assert choose_samples(2, split, TEST_SPLIT) == [0, 1]
    assert choose_samples(8, split, TEST_SPLIT) == [0, 1, 2]
    assert choose_samples(["z.jpg", "x.jpg"], split, TEST_SPLIT) == [2, 0]


@pytest.mark.parametrize(("image", "reason"), [
    ("train.jpg", "train.jpg is not a test image (not in data/captions/test.jsonl)"),
    ("bad.jpg", "bad.jpg has no image features (undecodable, see data/records/extract_features.json)"),
])
def test_a_listed_image_that_cannot_be_captioned_is_one_error_naming_the_param(image, reason):
    split = split_of(["x.jpg", "y.jpg"], without_features=["bad.jpg"])
    with pytest.raises(PipelineError) as raised:
        choose_samples(["x.jpg", image], split, TEST_SPLIT)
    assert str(raised.value) == f"params.yaml: evaluate.sample_images: {reason}"


@pytest.mark.parametrize(("value", "message"), [
    (0, "evaluate.sample_images: must be a count >= 1"),
    ([], "evaluate.sample_images: must be a count >= 1 or a non-empty list"),
    (["a.jpg", "a.jpg"], "evaluate.sample_images: must be a count >= 1 or a non-empty list of distinct"),
    (["a.jpg", 3], "evaluate.sample_images: must be a count >= 1 or a non-empty list"),
    ("all", "evaluate.sample_images: must be a count >= 1 or a non-empty list of distinct image ids "
            "(strings), got 'all'"),
])
def test_bad_sample_images_params_are_refused(tmp_path, value, message):
    document = yaml.safe_load((ROOT / "params.yaml").read_text())
    document["evaluate"]["sample_images"] = value
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(document))
    with pytest.raises(PipelineError, match=re.escape(message)):
        params.load(params.EvaluateParams, tmp_path / "params.yaml")


def test_each_epoch_has_its_saved_model_and_the_chosen_one_the_best_model(tmp_path):
    epochs = tmp_path / "epochs"
    epochs.mkdir()
    for name in ("epoch_001.keras", "epoch_001.json", "epoch_002.keras", "epoch_003.keras", "notes.txt"):
        (epochs / name).touch()
    best = ModelFolder(tmp_path).model
    assert epoch_models(2, ModelFolder(tmp_path)) == {1: epochs / "epoch_001.keras", 2: best,
                                                      3: epochs / "epoch_003.keras"}
    # train.save_every_epoch false: no per-epoch models, the chosen epoch's row alone.
    assert epoch_models(2, ModelFolder(tmp_path / "absent")) == {2: tmp_path / "absent/model.keras"}


def test_validation_bleu_is_read_by_epoch_from_the_table_of_epochs(tmp_path):
    log = tmp_path / "epochs.tsv"
    log.write_text("epoch\tphase\tloss\treward\tval_loss\tval_bleu4\n"
                   "1\tcross_entropy\t3.0\t\t3.1\t0.05\n2\tself_critical\t\t0.4\t2.5\t0.125\n")
    assert read_logged_epochs(log) == {1: (0.05, False), 2: (0.125, True)}


def test_an_epoch_is_titled_by_its_number_phase_and_choice():
    assert EpochRow("1", 0.1, False, []).title() == "1"
    assert EpochRow("2", 0.1, True, []).title() == "2 (chosen)"
    assert EpochRow("3", 0.1, False, [], self_critical=True).title() == "3 (self-critical)"
    assert EpochRow("4", 0.1, True, [], self_critical=True).title() == "4 (self-critical, chosen)"


def test_markdown_has_a_section_per_image_and_a_row_per_epoch_with_the_chosen_marked(tmp_path):
    table = a_table(tmp_path, [["a dog", "a cat"], ["a dog runs", ""]], chosen=2, unsaved=[3])
    text = render_samples_markdown(table)
    assert text.count("\n## ") == 2
    section_b = text.split("## `b.jpg`")[1]
    assert "| 1 | 0.0100 | a cat |" in section_b and "| 2 (chosen) | 0.0200 |  |" in section_b
    assert "beam size 3, length penalty 0.5, at most 30 words" in text
    assert "Epochs 3: no saved model (train.save_every_epoch is false)." in text


def test_html_table_has_thumbnails_as_heads_and_the_chosen_row_marked(tmp_path):
    table = a_table(tmp_path, [["red <b>", "blue"], ["green", "grey"], ["pink", "white"]],
                    chosen=2, unsaved=[])
    page = epoch_table_html(table, tmp_path)
    assert page.count('<th><img src="data:image/jpeg;base64,') == 2
    assert page.count("<tr") == 1 + 3
    assert re.findall(r"<tr class=chosen><td class=number>([^<]+)</td>", page) == ["2 (chosen)"]
    assert "red &lt;b&gt;" in page and "no saved model" not in page


def test_long_captions_wrap_within_the_plot_width():
    font = ImageFont.load_default(size=15)
    caption = " ".join(["a", "brown", "dog", "jumps", "over", "the", "fence"] * 6)
    lines = wrap(caption, font, 200)
    assert len(lines) > 1 and " ".join(lines) == caption
    assert all(font.getlength(line) <= 200 for line in lines)


def test_a_plot_shows_the_photo_then_a_line_per_epoch_with_the_chosen_one_highlighted(tmp_path):
    short = a_table(tmp_path, [["a dog"], ["a dog runs"]], chosen=2, unsaved=[])
    long = a_table(tmp_path, [["a dog"], ["a dog runs " * 12]], chosen=2, unsaved=[])
    photo = Image.new("RGB", (200, 150), (30, 120, 200))
    short_plot, long_plot = draw_sample(photo, short, 0), draw_sample(photo, long, 0)
    assert short_plot.width == long_plot.width == WIDTH
    assert long_plot.height > short_plot.height  # the long caption takes more lines
    pixels = np.asarray(short_plot)
    assert (pixels == (30, 120, 200)).all(axis=2).sum() == 200 * 150
    highlighted_rows = np.flatnonzero((pixels == CHOSEN_BACKGROUND).all(axis=2).any(axis=1))
    assert highlighted_rows.min() > np.flatnonzero((pixels == (30, 120, 200)).all(axis=2).any(axis=1)).max()
    assert plot_name(0, "train2014/COCO 1.jpg") == "01_train2014_COCO_1.png"


# The table the pipeline wrote on the built project (2 epochs, 9 test images with features).

def markdown_sections(text: str) -> dict[str, list[list[str]]]:
    """samples.md as {image: [[epoch, val BLEU-4, caption], ...]}."""
    sections = {}
    for block in text.split("\n## ")[1:]:
        heading, *lines = block.splitlines()
        sections[heading.strip("`")] = [
            [cell.strip() for cell in line.strip().strip("|").split("|")]
            for line in lines if line.startswith("| ") and not line.startswith("| epoch |")]
    return sections


@pytest.fixture
def project(built_project) -> Path:
    return built_project.path


@pytest.mark.slow
def test_the_table_has_a_row_per_epoch_a_column_per_sample_and_the_chosen_epoch(project):
    sections = markdown_sections((project / "data/evaluation/samples.md").read_text())
    test_images = [row["image"] for row in read_jsonl(project / "data/evaluation/captions.jsonl")]
    assert list(sections) == test_images[:DEFAULT_SAMPLES]
    best_epoch = read_json(project / "data/records/train/metrics.json")["best_epoch"]
    logged = read_logged_epochs(project / "metrics/train/epochs.tsv")
    epochs = FAST_PARAMS["train"]["epochs"] + FAST_PARAMS["train"]["self_critical_epochs"]
    expected = [[EpochRow(str(n), bleu4, n == best_epoch, [], self_critical).title(), f"{bleu4:.4f}"]
                for n, (bleu4, self_critical) in logged.items()]
    assert len(expected) == epochs and expected[-1][0].startswith(f"{epochs} (self-critical")
    assert all([cells[:2] for cells in rows] == expected for rows in sections.values())

    page = (project / "data/evaluation/report.html").read_text()
    assert page.count('<th><img src="data:image/jpeg;base64,') == DEFAULT_SAMPLES
    assert page.count("<tr class=chosen>") == 1 and page.count("<tr") == 1 + epochs


@pytest.mark.slow
def test_cells_are_what_predict_prints_with_each_epochs_model(project):
    sections = markdown_sections((project / "data/evaluation/samples.md").read_text())
    paths = [f"data/raw/images/{image}" for image in sections]
    for epoch in range(1, FAST_PARAMS["train"]["epochs"] + 1):
        model = f"models/epochs/epoch_{epoch:03d}.keras"
        printed = run([*PREDICT, *paths, "--model", model], project).stdout.splitlines()
        cells = [rows[epoch - 1][2] for rows in sections.values()]
        assert printed == [f"{path}\t{cell}" for path, cell in zip(paths, cells, strict=True)]


@pytest.mark.slow
def test_each_sample_has_a_png_plot_that_dvc_plots_show_renders(project, tmp_path):
    sections = markdown_sections((project / "data/evaluation/samples.md").read_text())
    names = [plot_name(position, image) for position, image in enumerate(sections)]
    assert sorted(path.name for path in (project / "data/sample_plots").iterdir()) == names
    evaluate = yaml.safe_load((project / "dvc.yaml").read_text())["stages"]["evaluate"]
    assert "data/sample_plots" in evaluate["plots"]
    dvc("plots", "show", "-o", str(tmp_path / "page"), cwd=project)
    page = (tmp_path / "page/index.html").read_text()
    assert page.count("vegaEmbed(") == 3
    shown = re.findall(r"<p>data/sample_plots/([^<]+)</p>\s*<div[^>]*>\s*<p>workspace</p>", page)
    assert shown == names


@pytest.mark.slow
def test_a_bad_sample_image_stops_evaluate_with_one_line_and_concerns_evaluate_alone(built_project,
                                                                                    tmp_path):
    project = built_project.clone(tmp_path / "project")
    set_params(project, {"evaluate": {"sample_images": ["pic_000.jpg"]}})
    changed = yaml.safe_load(dvc("status", "--json", cwd=project).stdout)
    assert set(changed) == {"evaluate", "publish"}  # publish reports the params in the card
    # dvc.yaml tracks the whole evaluate section, every key of which the stage reads.
    assert changed["evaluate"] == [{"changed deps": {"params.yaml": {"evaluate": "modified"}}}]
    result = run([sys.executable, "-m", "stages.evaluate"], project, check=False)
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1:] == [
        "error: params.yaml: evaluate.sample_images: pic_000.jpg is not a test image "
        "(not in data/captions/test.jsonl)"]
    assert [line for line in result.stderr.splitlines() if line.startswith("error:")] == \
        result.stderr.splitlines()[-1:]
