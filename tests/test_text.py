"""Caption parsing, cleaning, vocabulary, encoding and splits."""

from __future__ import annotations

import pytest

from captioner.errors import PipelineError
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


def test_token_file_without_usable_lines_names_the_file(tmp_path):
    path = write(tmp_path, "Flickr8k.token.txt", b"just words\n")
    with pytest.raises(PipelineError, match="Flickr8k.token.txt"):
        parse_token_file(path)


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
    with pytest.raises(PipelineError, match="split 'test' is empty.*Flickr_8k.testImages.txt"):
        make_splits(lists, {"a.jpg", "b.jpg"}, captions, 1, seed=0)
