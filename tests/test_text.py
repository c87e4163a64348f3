"""Caption cleaning, vocabulary and encoding; Flickr8k's files and the tokenize stage on them."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from captioner.captions.formats.base import Skips
from captioner.captions.formats.flickr8k import list_entries, token_lines
from captioner.core.errors import PipelineError
from captioner.core.files import read_json, read_jsonl
from captioner.core.text import (
    END_ID,
    PAD_ID,
    START_ID,
    UNK_ID,
    build_vocabulary,
    clean,
    decode,
    encode,
    has_words,
)
from stages import tokenize

ROOT = Path(__file__).resolve().parents[1]


def write(tmp_path, name, data: bytes):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_token_file_quirks(tmp_path):
    path = write(tmp_path, "Flickr8k.token.txt", (
        b"a.jpg#0\tA dog runs .\r\n"
        b"a.jpg#1\tTwo dogs play in 3 parks !\r\n"
        b"\r\n"
        b"2258277193_586949ec62.jpg.1#0\tpeople waiting for the subway\r\n"
        b"b.jpg#0 no tab on this line\n"
        b"b.jpg\tno caption number\n"
        b"b.jpg#0\t . , !\n"
        b"b.jpg#1\t\xff\xfe broken bytes\n"
        b"a.jpg#1\tA duplicate id .\n"
        b"c.jpg#0\tA cat sleeps"  # no final newline
    ))
    skips = Skips()
    entries = list(token_lines(path, skips))
    assert [(entry.image, entry.caption, entry.place) for entry in entries] == [
        ("a.jpg", "A dog runs .", 1),
        ("a.jpg", "Two dogs play in 3 parks !", 2),
        ("2258277193_586949ec62.jpg.1", "people waiting for the subway", 4),
        ("c.jpg", "A cat sleeps", 10),
    ]
    assert skips.counts == {
        "malformed_line": 2, "empty_caption": 1, "invalid_utf8": 1, "duplicate_caption_id": 1,
    }
    assert skips.first == {
        "malformed_line": 5, "empty_caption": 7, "invalid_utf8": 8, "duplicate_caption_id": 9,
    }


def test_token_file_without_usable_lines_names_the_file(tmp_path):
    path = write(tmp_path, "Flickr8k.token.txt", b"just words\n")
    with pytest.raises(PipelineError, match="Flickr8k.token.txt: no usable"):
        list(token_lines(path, Skips()))


def test_missing_token_file_is_named(tmp_path):
    with pytest.raises(PipelineError, match="Flickr8k.token.txt: cannot read the caption file"):
        list(token_lines(tmp_path / "Flickr8k.token.txt", Skips()))


def test_clean_keeps_one_letter_words_and_drops_punctuation_and_digits():
    assert clean("A girl, 3 dogs & a tri-colored ball!") == [
        "a", "girl", "dogs", "a", "tri", "colored", "ball"]


@pytest.mark.parametrize("caption", ["A dog.", " ?! ", "", "3 4", "éà", "\u212a", "x"])
def test_has_words_agrees_with_clean(caption):
    assert has_words(caption) == bool(clean(caption))


def test_vocabulary_uses_counts_and_reserves_special_ids():
    vocabulary = build_vocabulary([["a", "dog"], ["a", "cat"], ["a", "dog"]], min_count=2)
    assert vocabulary[:4] == ["<pad>", "<unk>", "<start>", "<end>"]
    assert vocabulary[4:] == ["a", "dog"]
    ids = {word: i for i, word in enumerate(vocabulary)}
    assert encode(["a", "cat"], ids, max_length=10) == [START_ID, ids["a"], UNK_ID, END_ID]


def test_encode_truncates_keeping_start_and_end():
    ids = {"w": 4}
    encoded = encode(["w"] * 10, ids, max_length=5)
    assert encoded == [START_ID, 4, 4, 4, END_ID]


def test_decode_stops_at_end_and_skips_specials():
    vocabulary = ["<pad>", "<unk>", "<start>", "<end>", "a", "dog"]
    assert decode([START_ID, 4, PAD_ID, 5, END_ID, 4], vocabulary) == "a dog"


def test_split_list_tolerates_crlf_and_blank_lines(tmp_path):
    path = write(tmp_path, "list.txt", b"a.jpg\r\n\r\nb.jpg\r\na.jpg")
    assert [(entry.image, entry.split, entry.place) for entry in list_entries(path, "val")] == \
        [("a.jpg", "val", 1), ("b.jpg", "val", 3), ("a.jpg", "val", 4)]


# --- the tokenize stage ---------------------------------------------------------------------

TOKENS_WITH_FAULTS = (
    b"a.jpg#0\tA dog runs .\n"
    b"a.jpg#0\tThe same caption id again .\n"
    b"b.jpg#0\tA \xff\xfe cat .\n"
    b"b.jpg#1\tA cat sits .\n"
    b"c.jpg 0 a line without a tab\n"
    b"c.jpg#0\t ?!\n"
    b"c.jpg#1\tA red ball .\n"
    b"d.jpg#0\tA child jumps .\n"
    b"gone.jpg#0\tAn image that is not there .\n"
    b"gone.jpg#1\tStill not there .\n"
    b"t1.jpg#0\tA dog .\n"
    b"t2.jpg#0\tA cat .\n"
)


def _prepare_tokenize(folder, images, token_file: bytes, dev: str = ""):
    (folder / "data/raw/images").mkdir(parents=True)
    for image in images:
        (folder / "data/raw/images" / image).write_bytes(b"")
    text = folder / "data/raw/text"
    text.mkdir(parents=True)
    (text / "Flickr8k.token.txt").write_bytes(token_file)
    (text / "Flickr_8k.trainImages.txt").write_text("a.jpg\nb.jpg\nc.jpg\nd.jpg\nbare.jpg\nlost.jpg\n")
    (text / "Flickr_8k.devImages.txt").write_text(dev)
    (text / "Flickr_8k.testImages.txt").write_text("t1.jpg\nt2.jpg\n")
    section = {**yaml.safe_load((ROOT / "params.yaml").read_text())["tokenize"], "min_count": 1}
    (folder / "params.yaml").write_text(yaml.safe_dump({"tokenize": section}))


def test_tokenize_stage_counts_every_skip_in_its_metrics(tmp_path, monkeypatch, capsys):
    images = ["a.jpg", "b.jpg", "c.jpg", "d.jpg", "bare.jpg", "t1.jpg", "t2.jpg"]
    _prepare_tokenize(tmp_path, images, TOKENS_WITH_FAULTS)
    monkeypatch.chdir(tmp_path)

    tokenize.main()

    metrics = read_json("data/records/tokenize.json")
    assert metrics["dropped_captions"] == {
        "duplicate_caption_id": 1, "empty_caption": 1, "image_missing": 2, "invalid_utf8": 1,
        "malformed_line": 1,
    }
    assert metrics["dropped_first_line"] == {
        "duplicate_caption_id": 2, "empty_caption": 6, "image_missing": 9, "invalid_utf8": 3,
        "malformed_line": 5,
    }
    assert metrics["images_without_captions"] == 1
    assert {name: split["images"] for name, split in metrics["splits"].items()} == \
        {"train": 3, "val": 1, "test": 2}
    assert metrics["validation"] == "1 images carved from train (numpy PCG64, seed 42)"
    warnings = capsys.readouterr().err.splitlines()
    assert "warning: data/raw/text/Flickr8k.token.txt: skipped 1 entries (invalid_utf8), " \
        "the first at line 3" in warnings
    assert "warning: data/raw/images: 1 images have no caption and are left out, the first bare.jpg" \
        in warnings
    assert len(warnings) == 6
    assert sorted(p.name for p in (tmp_path / "data/captions").iterdir()) == \
        ["test.jsonl", "train.jsonl", "val.jsonl", "vocab.json"]


def test_official_dev_split_is_used_when_its_images_are_present(tmp_path, monkeypatch):
    _prepare_tokenize(tmp_path, ["a.jpg", "b.jpg", "dv.jpg", "t1.jpg", "t2.jpg"],
                      TOKENS_WITH_FAULTS + b"dv.jpg#0\tA dev image .\n", dev="dv.jpg\ngone.jpg\n")
    monkeypatch.chdir(tmp_path)
    tokenize.main()
    metrics = read_json("data/records/tokenize.json")
    assert read_jsonl("data/captions/val.jsonl")[0]["image"] == "dv.jpg"
    assert metrics["validation"] == "given by the captions files"
    assert [record["image"] for record in read_jsonl("data/captions/train.jsonl")] == ["a.jpg", "b.jpg"]


def test_an_image_in_two_split_lists_is_refused(tmp_path, monkeypatch):
    _prepare_tokenize(tmp_path, ["a.jpg", "b.jpg", "t1.jpg"], TOKENS_WITH_FAULTS, dev="b.jpg\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(PipelineError, match=r"data/raw/text/Flickr_8k.devImages.txt: line 1: image "
                                            r"'b.jpg' is given split 'val' here and 'train' before"):
        tokenize.main()


def test_tokenize_stage_refuses_an_image_folder_without_images(tmp_path, monkeypatch):
    _prepare_tokenize(tmp_path, [], TOKENS_WITH_FAULTS)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(PipelineError, match="data/raw/images: no images found"):
        tokenize.main()
    assert not (tmp_path / "data/captions").exists()
