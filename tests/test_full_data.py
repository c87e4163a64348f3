"""The data stages on the full Flickr8k mirror (run with `pytest --run-full-data -m full_data`)."""

from __future__ import annotations

import pytest

from captioner.core.files import read_json
from tests.helpers.project import FULL, copy_project, run

pytestmark = [
    pytest.mark.full_data,
    pytest.mark.skipif(not FULL.exists(), reason=f"the full mirror is not at {FULL}"),
]


def test_tokenize_finds_every_official_train_and_test_image_with_five_captions(tmp_path):
    project = copy_project(tmp_path / "project", {
        "download": {"images_url": str(FULL / "Flickr8k_Dataset.zip"),
                     "text_url": str(FULL / "Flickr8k_text.zip")},
    })
    run(["python", "-m", "stages.download"], project)
    run(["python", "-m", "stages.tokenize"], project)
    splits = read_json(project / "data/records/tokenize.json")["splits"]
    assert splits["train"]["images"] + splits["val"]["images"] == 6000
    assert splits["val"]["images"] == 500
    assert splits["test"]["images"] == 1000
    for split in splits.values():
        assert split["captions"] == 5 * split["images"]
