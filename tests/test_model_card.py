"""The model card: its headline, its Markdown, its measures of the model's weak points, reading it
back (bad cards refused in one line), and the decoding settings a published model brings."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import yaml
from PIL import Image

from captioner.__main__ import decoding_settings
from captioner.core import params
from captioner.core.errors import PipelineError
from captioner.core.params import DecodingSettings, TrainParams
from captioner.inference.model_card import CARD_JSON, file_md5, read_card
from captioner.publishing.card import headline, render_markdown
from captioner.publishing.limitations import (
    PHOTO_LIST,
    most_repeated,
    read_photos,
    score_quartiles,
    worst_captioned,
)
from captioner.publishing.publish import chosen_members
from tests.helpers.project import ROOT, params_only_project

SPLITS = {"train": {"images": 5500, "captions": 27500}, "val": {"images": 500, "captions": 2500},
          "test": {"images": 1000, "captions": 5000}}
SCORES = {"bleu4": 0.22785, "meteor": 0.20459, "cider": 0.56343, "test_images": 1000}


def card(md5: str = "0" * 32) -> dict:
    """A card as the publish stage writes one, every field filled, for a model of this MD5."""
    return {
        "name": "captioner",
        "headline": headline(SCORES, SPLITS, "Flickr8k", "2026-12-07"),
        "model": {"description": "captions photos", "file": "model.keras", "md5": md5,
                  "backbone": {"backbone": "efficientnet_lite0", "weights": "imagenet"},
                  "members": [{"member": 1, "decoder": "merge", "seed": 42, "best_epoch": 10,
                               "monitor": "val_cider", "best": 0.54}],
                  "vocabulary": 2422,
                  "decoding": {"beam_size": 2, "max_length": 9, "length_penalty": 0.5}},
        "data": {"splits": SPLITS, "vectors": {"source": "train"},
                 "weights": {"source": "imagenet"},
                 "sources": {"images": {"source": "a.zip", "bytes": 10, "sha256": "f" * 64}}},
        "scores": {"model": SCORES, "published": [{"model": "A | B", "bleu4": 0.2,
                                                   "meteor": 0.2, "cider": None}],
                   "retrieval_baseline": {"k": 40, "bleu4": 0.17, "meteor": 0.18, "cider": 0.43}},
        "diversity": {"distinct_captions": 0.749, "distinct_words": 348},
        "limitations": {"worst_captioned": [], "near_zero_cider_images": 3, "most_repeated": [],
                        "out_of_domain": [{"file": "cat.jpg", "shows": "a cat", "score": -0.5,
                                           "caption": "a dog runs"}],
                        "beam_scores": {"test": {"q1": -1.0, "median": -0.8, "q3": -0.6},
                                        "out_of_domain": {"q1": -1, "median": -0.5, "q3": 0}}},
        "params": {"train": {"units": 512}},
    }


def test_the_headline_gives_scores_data_and_date():
    assert headline(SCORES, SPLITS, "Flickr8k", "2026-12-07")["text"] == (
        "BLEU-4 0.228, METEOR 0.205, CIDEr 0.563 on 1,000 test images · Flickr8k: trained on "
        "5,500 images, 500 more for validation · published 2026-12-07")


def test_the_markdown_card_holds_every_section_and_escapes_table_cells():
    text = render_markdown(card())
    for heading in ("## Model", "## Data", "## Test scores", "## Limitations, measured",
                    "## Params"):
        assert heading in text
    assert "| A \\| B | 0.200 | 0.200 | — |" in text
    assert "3 of 1,000 score under 0.01" in text
    assert "Of these 1 photos' captions, 1 score at or above the test captions' lower quartile: " \
           "the score alone does not flag" in text


def test_the_worst_captioned_test_images_come_first_with_their_cider():
    references = {"good": ["a dog runs on the grass", "a brown dog runs on grass"],
                  "bad": ["a girl climbs a rock", "a child climbing a rock wall"],
                  "fair": ["a man rides a bike", "a man on a red bike"]}
    captions = {"good": "a dog runs on the grass", "bad": "a dog swims", "fair": "a man on a horse"}
    rows = [{"image": f"{name}.jpg", "caption": captions[name], "references": references[name]}
            for name in ("good", "bad", "fair")]
    worst, near_zero = worst_captioned(rows, 2)
    assert [row["image"] for row in worst] == ["bad.jpg", "fair.jpg"]
    assert worst[0]["cider"] == 0 and worst[1]["cider"] > 0
    assert worst[1]["references"] == references["fair"]
    assert near_zero == 1


def test_repeated_captions_are_counted_and_one_off_captions_left_out():
    said = ["a dog runs", "a cat", "a dog runs", "a boy", "a dog runs", "a cat"]
    assert most_repeated(said, 5) == [{"caption": "a dog runs", "images": 3},
                                      {"caption": "a cat", "images": 2}]
    assert score_quartiles([-1.0, -0.5, 0.0]) == {"q1": -0.75, "median": -0.5, "q3": -0.25}


def published_model(folder: Path) -> Path:
    """A stand-in model file (a card only hashes it) and the card describing it, in `folder`."""
    folder.mkdir(exist_ok=True)
    model = folder / "model.keras"
    model.write_bytes(b"a model")
    (folder / CARD_JSON).write_text(json.dumps(card(file_md5(model))))
    return model


def test_a_card_is_read_only_beside_the_model_it_describes(tmp_path):
    assert read_card(tmp_path / "model.keras") is None  # no card, no model
    model = published_model(tmp_path)
    assert read_card(model) == card(file_md5(model))
    model.write_bytes(b"another model")
    with pytest.raises(PipelineError, match=rf"^{tmp_path / CARD_JSON}: describes model.keras "
                                            rf"with MD5 \w+, not {model}; publish it again"):
        read_card(model)


def test_a_broken_card_is_one_line(tmp_path):
    model = published_model(tmp_path)
    (tmp_path / CARD_JSON).write_text("{not json")
    with pytest.raises(PipelineError, match=rf"^{tmp_path / CARD_JSON}: not a model card: "):
        read_card(model)
    (tmp_path / CARD_JSON).write_text(json.dumps({"name": "captioner"}))
    with pytest.raises(PipelineError, match="not a model card: no 'model'$"):
        read_card(model)


def arguments(model: Path, **flags) -> argparse.Namespace:
    return argparse.Namespace(model=model, **{"beam_size": None, "length_penalty": None,
                                              "max_length": None, **flags})


def test_a_published_model_decodes_as_its_card_says_unless_flags_say_otherwise(
        tmp_path, monkeypatch):
    # In a project whose evaluate params say otherwise, the card's settings (those its scores were
    # measured with) come first, and flags override them.
    project = params_only_project(tmp_path / "project", {"evaluate": {"beam_size": 5,
                                                                      "batch_size": 16}})
    model = published_model(tmp_path / "published")
    monkeypatch.chdir(project)
    assert decoding_settings(arguments(model)) == (
        DecodingSettings(beam_size=2, max_length=9, length_penalty=0.5), 16)
    assert decoding_settings(arguments(model, beam_size=1))[0] == \
        DecodingSettings(beam_size=1, max_length=9, length_penalty=0.5)
    assert decoding_settings(arguments(tmp_path / "models/model.keras"))[0].beam_size == 5
    monkeypatch.chdir(tmp_path)  # no params.yaml: the card alone
    assert decoding_settings(arguments(model))[0].beam_size == 2


def test_a_photo_list_naming_a_missing_photo_is_one_line(tmp_path):
    (tmp_path / PHOTO_LIST).write_text(json.dumps([{"file": "cat.jpg", "shows": "a cat",
                                                    "source": "me", "licence": "CC0"}]))
    with pytest.raises(PipelineError, match=rf"^{tmp_path / PHOTO_LIST}: lists cat.jpg, which "
                                            rf"is not in {tmp_path}$"):
        read_photos(tmp_path)
    (tmp_path / PHOTO_LIST).write_text(json.dumps([{"file": "cat.jpg"}]))
    with pytest.raises(PipelineError, match="not a list of photos with file, shows, source, "):
        read_photos(tmp_path)


def test_the_committed_photos_are_listed_licensed_and_small():
    folder = ROOT / "photos"
    photos = read_photos(folder)
    assert sorted(photo.file for photo in photos) == sorted(path.name for path in
                                                             folder.glob("*.jpg"))
    assert all(photo.licence and photo.source and photo.shows for photo in photos)
    for photo in photos:
        with Image.open(folder / photo.file) as image:
            assert max(image.size) <= 320, photo.file
    assert sum(path.stat().st_size for path in folder.iterdir()) < 400_000


def train_params(**changes) -> TrainParams:
    section = yaml.safe_load((ROOT / "params.yaml").read_text())["train"]
    return params.parse(TrainParams, "train", {**section, **changes})


def test_members_are_read_from_a_lone_model_s_summary_and_an_ensemble_s():
    # A lone model without self-critical epochs is chosen by train.monitor (val_loss).
    lone = train_params(ensemble=1, self_critical_epochs=0, seed=7)
    assert chosen_members(lone, {"best_epoch": 4, "best_val_loss": 3.21}) == [
        {"member": 1, "decoder": "merge", "seed": 7, "best_epoch": 4, "monitor": "val_loss",
         "best": 3.21}]
    ensemble = train_params(ensemble=2, decoder=["merge", "attention"], seed=42)
    summary = {"member_1": {"best_epoch": 12, "best_val_cider": 0.5},
               "member_2": {"best_epoch": 11, "best_val_cider": 0.6}, "ensemble": {}}
    assert [(member["decoder"], member["seed"], member["best"]) for member in
            chosen_members(ensemble, summary)] == [("merge", 42, 0.5), ("attention", 1042, 0.6)]
