"""`dvc plots show`/`diff` write a page that works offline: three charts with a line per ensemble
member, integer epoch ticks, and below them the evaluate stage's image plots (one PNG per sample
image, revisions side by side)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from PIL import Image

from tests.helpers.project import ROOT, commit_all, dvc, run

pytestmark = pytest.mark.slow  # every test here runs real DVC commands

HISTORY = Path("metrics/train/epochs.tsv")
SAMPLE_PLOTS = Path("data/sample_plots")
SAMPLE_NAMES = ("01_pic_001.png", "02_pic_007.png")
CHART_TITLES = {"Loss per epoch", "Validation BLEU-4 per epoch", "Validation CIDEr per epoch"}
MEMBERS = (1, 2)
# How each bundled library's minified build defines its browser global.
LIBRARY_DEFINITIONS = ("self).vega={}", "self).vegaLite={}", "self).vegaEmbed=")
SPEC = re.compile(r"var spec = (.*);$", re.MULTILINE)
# An image plot on the page: its path, then for each revision its name and its copied PNG.
IMAGE_PLOT = re.compile(r"<p>(data/sample_plots/[^<]+)</p>((?:\s*<div[^>]*>\s*<p>[^<]*</p>\s*"
                        r"<img src=\"[^\"]+\">\s*</div>)+)")
REVISION_IMAGE = re.compile(r"<p>([^<]*)</p>\s*<img src=\"([^\"]+)\">")


def write_history(project: Path, epochs: int, offset: float) -> None:
    """The train stage's table of epochs 1..epochs of an ensemble of two, as the stage writes it."""
    path = project / HISTORY
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = "".join(f"{epoch}\t{member}\tcross_entropy\t{offset + 1 / epoch}\t\t{offset + 2 / epoch}"
                   f"\t{0.1 * epoch}\t{0.2 * epoch + member}\n"
                   for member in MEMBERS for epoch in range(1, epochs + 1))
    path.write_text(f"epoch\tmember\tphase\tloss\treward\tval_loss\tval_bleu4\tval_cider\n{rows}")


def write_sample_plots(project: Path, shade: int) -> None:
    """Stand-ins for the evaluate stage's PNGs, one plain colour per revision."""
    (project / SAMPLE_PLOTS).mkdir(parents=True, exist_ok=True)
    for name in SAMPLE_NAMES:
        Image.new("RGB", (40, 30), (shade, 90, 90)).save(project / SAMPLE_PLOTS / name)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """dvc.yaml (with params.yaml, which its artifact's labels read) and .dvc's config and plot
    templates, with four epochs of metrics, in git."""
    (tmp_path / ".dvc").mkdir()
    shutil.copy2(ROOT / "dvc.yaml", tmp_path)
    shutil.copy2(ROOT / "params.yaml", tmp_path)
    shutil.copy2(ROOT / ".dvc/config", tmp_path / ".dvc")
    shutil.copytree(ROOT / ".dvc/plots", tmp_path / ".dvc/plots")
    write_history(tmp_path, epochs=4, offset=2.0)
    write_sample_plots(tmp_path, shade=40)
    run(["git", "init", "-q"], tmp_path)
    commit_all(tmp_path, "four epochs")
    return tmp_path


def chart_specs(page: str) -> dict[str, dict]:
    """The Vega-Lite spec of each chart on a `dvc plots` page, by title."""
    specs = [json.loads(match) for match in SPEC.findall(page)]
    return {spec["title"]["text"]: spec for spec in specs}


def image_plots(page: str, folder: Path) -> dict[str, list[str]]:
    """The revisions shown for each image plot on a `dvc plots` page written to `folder`, in page
    order; checks that every PNG the page shows was written beside it."""
    shown = {}
    for path, revisions in IMAGE_PLOT.findall(page):
        pairs = REVISION_IMAGE.findall(revisions)
        assert all((folder / source).is_file() for _, source in pairs)
        shown[path] = [revision for revision, _ in pairs]
    return shown


def assert_offline_page(page: str) -> None:
    script_tags = re.findall(r"<script\b[^>]*>", page)
    assert script_tags and not [tag for tag in script_tags if "src" in tag]
    for definition in LIBRARY_DEFINITIONS:
        assert definition in page


def test_show_writes_three_charts_that_need_no_network_then_the_sample_images(project):
    dvc("plots", "show", "-o", "page", cwd=project)
    page = (project / "page/index.html").read_text(encoding="utf8")

    assert_offline_page(page)
    assert page.count("vegaEmbed(") == 3
    specs = chart_specs(page)
    assert set(specs) == CHART_TITLES
    for spec in specs.values():
        x_axis = spec["encoding"]["x"]
        assert x_axis["title"] == "epoch"
        assert x_axis["axis"]["tickMinStep"] == 1 and x_axis["axis"]["format"] == "d"
        assert x_axis["scale"]["zero"] is False
        # A line per member, told apart in a legend.
        assert spec["encoding"]["detail"]["field"] == spec["encoding"]["shape"]["field"] == "member"
        assert spec["encoding"]["shape"]["title"] == "member"
    loss_points = specs["Loss per epoch"]["data"]["values"]
    assert sorted((int(point["member"]), int(point["epoch"]), point["field"]) for point in loss_points) \
        == [(member, epoch, field) for member in MEMBERS for epoch in range(1, 5)
            for field in ("loss", "val_loss")]
    cider = {(int(point["member"]), int(point["epoch"])): float(point["val_cider"])
             for point in specs["Validation CIDEr per epoch"]["data"]["values"]}
    assert cider == {(member, epoch): 0.2 * epoch + member for member in MEMBERS for epoch in range(1, 5)}
    assert image_plots(page, project / "page") == {
        f"{SAMPLE_PLOTS}/{name}": ["workspace"] for name in SAMPLE_NAMES}
    assert page.rindex("vegaEmbed(") < page.index(f"<p>{SAMPLE_PLOTS}/")


def test_diff_overlays_two_revisions_in_the_same_three_charts_and_pairs_their_images(project):
    write_history(project, epochs=6, offset=1.0)
    write_sample_plots(project, shade=200)
    commit_all(project, "six epochs")

    dvc("plots", "diff", "HEAD~1", "HEAD", "-o", "page", cwd=project)
    page = (project / "page/index.html").read_text(encoding="utf8")

    assert_offline_page(page)
    specs = chart_specs(page)
    assert set(specs) == CHART_TITLES
    bleu_points = specs["Validation BLEU-4 per epoch"]["data"]["values"]
    steps_by_revision: dict[str, list[int]] = {}
    for point in bleu_points:
        if point["member"] == "1":
            steps_by_revision.setdefault(point["rev"], []).append(int(point["epoch"]))
    assert steps_by_revision == {"HEAD~1": [1, 2, 3, 4], "HEAD": [1, 2, 3, 4, 5, 6]}
    assert image_plots(page, project / "page") == {
        f"{SAMPLE_PLOTS}/{name}": ["HEAD~1", "HEAD"] for name in SAMPLE_NAMES}
