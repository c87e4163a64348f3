"""Caption parsing, cleaning, vocabulary, encoding and splits."""

from __future__ import annotations

import pytest
import yaml

from captioner.errors import PipelineError
from captioner.files import read_json
from captioner.text import (
    END_ID,
    PAD_ID,
    START_ID,
    UNK_ID,
    build_vocabulary,
    carve_validation,
    clean,
    decode,
    encode,
    make_splits,
    parse_token_file,
    read_image_list,
)
from stages import tokenize


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
    parsed = parse_token_file(path)
    assert parsed.captions == {
        "a.jpg": ["A dog runs .", "Two dogs play in 3 parks !"],
        "c.jpg": ["A cat sleeps"],
    }
    assert parsed.dropped == {
        "bad_image_id": 1, "malformed_line": 2, "empty_caption": 1, "invalid_utf8": 1,
        "duplicate_caption_id": 1,
    }
    assert parsed.first_dropped_line == {
        "bad_image_id": 4, "malformed_line": 5, "empty_caption": 7, "invalid_utf8": 8,
        "duplicate_caption_id": 9,
    }


def test_token_file_without_usable_lines_names_the_file(tmp_path):
    path = write(tmp_path, "Flickr8k.token.txt", b"just words\n")
    with pytest.raises(PipelineError, match="Flickr8k.token.txt"):
        parse_token_file(path)


def test_missing_token_file_is_named(tmp_path):
    with pytest.raises(PipelineError, match="Flickr8k.token.txt: cannot read the caption file"):
        parse_token_file(tmp_path / "Flickr8k.token.txt")


def test_clean_keeps_one_letter_words_and_drops_punctuation_and_digits():
    assert clean("A girl, 3 dogs & a tri-colored ball!") == [
        "a", "girl", "dogs", "a", "tri", "colored", "ball"]


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
    assert read_image_list(path) == ["a.jpg", "b.jpg"]


def test_validation_carved_from_train_is_seeded_and_disjoint():
    train = [f"{i}.jpg" for i in range(100)]
    first = carve_validation(train, 10, seed=1)
    assert first == carve_validation(list(reversed(train)), 10, seed=1)
    assert first != carve_validation(train, 10, seed=2)
    assert len(set(first)) == 10
    lists = {"train": train, "dev": ["x.jpg"], "test": ["t.jpg"]}
    captions = {image: ["c"] for image in [*train, "t.jpg"]}
    splits, report = make_splits(lists, set(captions), captions, val_images=10, seed=1)
    assert splits["val"] == first
    assert not set(splits["val"]) & set(splits["train"])
    assert len(splits["train"]) == 90
    assert report["split_lists"]["dev"]["image_missing"] == 1
    assert "carved" in report["validation"]


def test_official_dev_split_is_used_when_present():
    lists = {"train": ["a.jpg"], "dev": ["d.jpg", "gone.jpg"], "test": ["t.jpg"]}
    captions = {image: ["c"] for image in ["a.jpg", "d.jpg", "t.jpg", "gone.jpg"]}
    splits, report = make_splits(lists, {"a.jpg", "d.jpg", "t.jpg"}, captions, 5, seed=0)
    assert splits == {"train": ["a.jpg"], "val": ["d.jpg"], "test": ["t.jpg"]}
    assert report["validation"] == "official dev split"


def test_empty_split_is_an_error_naming_the_split():
    lists = {"train": ["a.jpg", "b.jpg"], "dev": [], "test": ["missing.jpg"]}
    captions = {"a.jpg": ["c"], "b.jpg": ["c"]}
    with pytest.raises(PipelineError, match=r"split 'test' is empty: none of the 1 images of "
                       r"Flickr_8k.testImages.txt .*\(1 absent, 0 without captions\)"):
        make_splits(lists, {"a.jpg", "b.jpg"}, captions, 1, seed=0)


def test_listed_images_without_captions_are_counted():
    lists = {"train": ["a.jpg", "bare.jpg", "gone.jpg"], "dev": ["d.jpg"], "test": ["t.jpg"]}
    captions = {image: ["c"] for image in ["a.jpg", "d.jpg", "t.jpg"]}
    present = {"a.jpg", "bare.jpg", "d.jpg", "t.jpg"}
    splits, report = make_splits(lists, present, captions, 5, seed=0)
    assert splits["train"] == ["a.jpg"]
    assert report["split_lists"]["train"] == {"listed": 3, "image_missing": 1, "no_captions": 1}


def test_asking_for_all_train_images_as_validation_names_the_param():
    lists = {"train": ["a.jpg", "b.jpg"], "dev": [], "test": ["t.jpg"]}
    captions = {image: ["c"] for image in ["a.jpg", "b.jpg", "t.jpg"]}
    with pytest.raises(PipelineError, match="tokenize.val_images=2 leaves no training images"):
        make_splits(lists, set(captions), captions, 2, seed=0)


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


def _prepare_tokenize(folder, images, token_file: bytes):
    (folder / "data/raw/images").mkdir(parents=True)
    for image in images:
        (folder / "data/raw/images" / image).write_bytes(b"")
    text = folder / "data/raw/text"
    text.mkdir(parents=True)
    (text / "Flickr8k.token.txt").write_bytes(token_file)
    (text / "Flickr_8k.trainImages.txt").write_text("a.jpg\nb.jpg\nc.jpg\nd.jpg\nbare.jpg\nlost.jpg\n")
    (text / "Flickr_8k.devImages.txt").write_text("")
    (text / "Flickr_8k.testImages.txt").write_text("t1.jpg\nt2.jpg\n")
    section = {"min_count": 1, "max_length": 32, "val_images": 1, "seed": 0}
    (folder / "params.yaml").write_text(yaml.safe_dump({"tokenize": section}))


def test_tokenize_stage_counts_every_skip_in_its_metrics(tmp_path, monkeypatch, capsys):
    images = ["a.jpg", "b.jpg", "c.jpg", "d.jpg", "bare.jpg", "t1.jpg", "t2.jpg"]
    _prepare_tokenize(tmp_path, images, TOKENS_WITH_FAULTS)
    monkeypatch.chdir(tmp_path)

    tokenize.main()

    metrics = read_json("metrics/data.json")
    assert metrics["dropped_captions"] == {
        "duplicate_caption_id": 1, "empty_caption": 1, "image_missing": 2, "invalid_utf8": 1,
        "malformed_line": 1,
    }
    assert metrics["dropped_first_line"] == {
        "duplicate_caption_id": 2, "empty_caption": 6, "invalid_utf8": 3, "malformed_line": 5,
    }
    assert metrics["split_lists"]["train"] == {"listed": 6, "image_missing": 1, "no_captions": 1}
    assert {name: split["images"] for name, split in metrics["splits"].items()} == \
        {"train": 3, "val": 1, "test": 2}
    warnings = capsys.readouterr().err.splitlines()
    assert "warning: data/raw/text/Flickr8k.token.txt: skipped 1 lines (invalid_utf8), " \
        "the first at line 3" in warnings
    assert len(warnings) == 4
    assert sorted(p.name for p in (tmp_path / "data/captions").iterdir()) == \
        ["test.jsonl", "train.jsonl", "val.jsonl", "vocab.json"]


def test_tokenize_stage_refuses_an_image_folder_without_images(tmp_path, monkeypatch):
    _prepare_tokenize(tmp_path, [], TOKENS_WITH_FAULTS)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(PipelineError, match="data/raw/images: no .jpg images found"):
        tokenize.main()
    assert not (tmp_path / "data/captions").exists()
