"""The caption formats tokenize reads, auto-detection, carved splits and the handling of bad input."""

from __future__ import annotations

import dataclasses
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from captioner.captions.collect import carve_count
from captioner.captions.formats import AUTO, FORMATS, detect
from captioner.captions.formats.base import TextFolder
from captioner.captions.tokenize import tokenize_collection
from captioner.core import params
from captioner.core.errors import PipelineError
from captioner.core.files import read_jsonl
from captioner.core.paths import RAW_TEXT_SOURCE
from tests.helpers.datasets import write_coco, write_csv, write_flickr30k, write_karpathy
from tests.helpers.downloading import download, download_settings
from tests.helpers.http_server import serve_directory
from tests.helpers.project import ROOT, SAMPLE

DEFAULTS = params.load(params.TokenizeParams, ROOT / "params.yaml")
FIFTY = {f"img_{index:02d}.jpg": [f"a dog number {index} runs", "a cat sleeps"] for index in range(50)}
GOOD = {f"g{index}.jpg": [f"a dog runs on grass {index}"] for index in range(10)}


@dataclasses.dataclass
class Result:
    metrics: dict
    splits: dict[str, list[dict]]

    def images(self, split: str) -> list[str]:
        return [record["image"] for record in self.splits[split]]


def touch_images(images_dir: Path, names) -> None:
    for name in names:
        (images_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (images_dir / name).write_bytes(b"")


def tokenize(folder: Path, format_name: str, text_source: Path | None = None, **changes) -> Result:
    """Runs the stage's library call on folder/images and folder/text (and the download stage's
    record of the captions' source, where given) with the default params changed by `changes`."""
    output = folder / "captions"
    output.mkdir()
    config = dataclasses.replace(DEFAULTS, format=format_name, **changes)
    metrics = tokenize_collection(config, folder / "images", folder / "text", output, text_source)
    return Result(metrics, {split: read_jsonl(output / f"{split}.jsonl")
                            for split in ("train", "val", "test")})


# --- each format ---------------------------------------------------------------------------


def test_flickr30k_is_carved_into_val_and_test_with_the_defaults_on_50_images(tmp_path):
    touch_images(tmp_path / "images", FIFTY)
    write_flickr30k(tmp_path / "text", FIFTY)
    result = tokenize(tmp_path, "flickr30k")
    assert {name: split["images"] for name, split in result.metrics["splits"].items()} == \
        {"train": 40, "val": 5, "test": 5}
    assert len({*result.images("train"), *result.images("val"), *result.images("test")}) == 50
    assert result.metrics["validation"] == "5 images carved from train (numpy PCG64, seed 42)"
    record = result.splits["train"][0]
    assert record["captions"] == FIFTY[record["image"]] and len(record["tokens"]) == 2


def test_karpathy_takes_the_files_splits_and_restval_joins_train(tmp_path):
    splits = {"val2014/a.jpg": "restval", "train2014/b.jpg": "train", "val2014/c.jpg": "val",
              "val2014/d.jpg": "test"}
    captions = {name: [f"a photo of {name[-5]}", "two dogs play"] for name in splits}
    touch_images(tmp_path / "images", splits)
    write_karpathy(tmp_path / "text", captions, splits)
    result = tokenize(tmp_path, "karpathy")
    assert result.images("train") == ["val2014/a.jpg", "train2014/b.jpg"]
    assert result.images("val") == ["val2014/c.jpg"] and result.images("test") == ["val2014/d.jpg"]
    assert result.splits["val"][0]["captions"] == ["a photo of c", "two dogs play"]
    assert result.metrics["validation"] == result.metrics["test_split"] == "given by the captions files"


def test_coco_finds_file_names_in_subfolders_and_carves_test(tmp_path):
    names = [f"train2014/COCO_train2014_{index:012d}.jpg" for index in range(40)] + \
            [f"val2014/COCO_val2014_{index:012d}.jpg" for index in range(10)]
    splits = {name: "val" if name.startswith("val") else "train" for name in names}
    captions = {name: ["a man rides a horse", f"horse number {index}"] for index, name in enumerate(names)}
    touch_images(tmp_path / "images", names)
    write_coco(tmp_path / "text", captions, splits)
    result = tokenize(tmp_path, "coco")
    assert sorted(result.images("val")) == names[40:]
    assert len(result.images("test")) == 4 and len(result.images("train")) == 36
    assert set(result.images("test")) < set(names[:40])
    assert result.metrics["test_split"] == "4 images carved from train (numpy PCG64, seed 42)"


def test_csv_split_column_and_relative_paths(tmp_path):
    splits = {f"{folder}/{index}.jpg": split for index in range(4)
              for folder, split in (("train2014", "train"), ("val2014", "val"), ("test2014", "test"))}
    captions = {name: ["a bird, on a wire", "a small bird"] for name in splits}
    touch_images(tmp_path / "images" / "coco", splits)
    write_csv(tmp_path / "text", captions, splits)
    result = tokenize(tmp_path, "csv")
    assert result.images("test") == [f"coco/test2014/{index}.jpg" for index in range(4)]
    assert result.splits["train"][0]["captions"] == ["a bird, on a wire", "a small bird"]


def test_csv_without_split_column_carves_by_fraction(tmp_path):
    touch_images(tmp_path / "images", FIFTY)
    write_csv(tmp_path / "text", FIFTY)
    result = tokenize(tmp_path, "csv", val_images=0.2, test_images=0.1)
    assert [len(result.images(split)) for split in ("train", "val", "test")] == [35, 10, 5]


# --- auto ----------------------------------------------------------------------------------

WRITERS = {
    "flickr30k": lambda text: write_flickr30k(text, GOOD),
    "karpathy": lambda text: write_karpathy(text, GOOD, dict.fromkeys(GOOD, "train")),
    "coco": lambda text: write_coco(text, GOOD, dict.fromkeys(GOOD, "train")),
    "csv": lambda text: write_csv(text, GOOD),
}


@pytest.mark.parametrize("format_name", WRITERS)
def test_auto_detects_the_format_and_says_which(tmp_path, capsys, format_name):
    WRITERS[format_name](tmp_path / "text")
    touch_images(tmp_path / "images", GOOD)
    result = tokenize(tmp_path, AUTO)
    assert result.metrics["format"] == format_name
    line, = capsys.readouterr().out.splitlines()
    assert line.startswith(f"tokenize: format auto chose {format_name} (")


def test_auto_prefers_karpathy_and_names_the_other_formats_present(tmp_path, capsys):
    for format_name in ("csv", "karpathy", "coco"):
        WRITERS[format_name](tmp_path)
    assert detect(TextFolder(tmp_path)) == "karpathy"
    assert capsys.readouterr().out == ("tokenize: format auto chose karpathy (dataset_coco.json); also "
                                       "present: coco, csv (set tokenize.format to use one)\n")


def test_auto_without_a_known_file_lists_what_it_looked_for(tmp_path):
    (tmp_path / "readme.txt").write_text("nothing here")
    with pytest.raises(PipelineError, match=r"no captions file of a known format \(looked for "
                                            r"dataset_\*.json \(karpathy\), captions_\*.json"):
        detect(TextFolder(tmp_path))


def test_every_format_is_a_tokenize_format_param_value():
    assert {AUTO, *FORMATS} == set(params.CAPTION_FORMATS)


@pytest.mark.skipif(not SAMPLE.exists(), reason=f"the sample mirror is not at {SAMPLE}")
def test_the_sample_mirror_runs_with_the_default_params(tmp_path):
    with zipfile.ZipFile(SAMPLE / "Flickr8k_text.zip") as archive:
        archive.extractall(tmp_path / "text")
    with zipfile.ZipFile(SAMPLE / "Flickr8k_Dataset.zip") as archive:
        touch_images(tmp_path / "images", [Path(name).name for name in archive.namelist()
                                           if name.endswith(".jpg")])
    result = tokenize(tmp_path, "flickr8k")
    assert {name: split["images"] for name, split in result.metrics["splits"].items()} == \
        {"train": 144, "val": 16, "test": 40}


# --- carving -------------------------------------------------------------------------------


@pytest.mark.parametrize(("wanted", "pool", "expected"), [
    (500, 6000, 500), (500, 160, 16), (500, 50, 5), (500, 5, 1), (3, 50, 3),
    (0.2, 50, 10), (0.29, 100, 29), (0.01, 10, 1),
])
def test_carve_count_takes_a_count_capped_by_the_fraction_or_a_fraction(wanted, pool, expected):
    assert carve_count(wanted, pool, max_fraction=0.1) == expected


def test_carving_is_numpys_seeded_choice_over_the_sorted_pool(tmp_path):
    names = {f"{index:03d}.jpg": ["a dog"] for index in range(100)}
    touch_images(tmp_path / "images", names)
    write_flickr30k(tmp_path / "text", dict(reversed(names.items())))
    result = tokenize(tmp_path, "flickr30k", val_images=10, test_images=5, seed=3)
    generator = np.random.default_rng(3)
    pool = sorted(names)
    val = [pool[i] for i in sorted(generator.choice(100, size=10, replace=False))]
    rest = [name for name in pool if name not in val]
    test = [rest[i] for i in sorted(generator.choice(90, size=5, replace=False))]
    assert (result.images("val"), result.images("test")) == (val, test)


def test_carving_every_training_image_names_the_param(tmp_path):
    names = dict(list(FIFTY.items())[:2])
    touch_images(tmp_path / "images", names)
    write_flickr30k(tmp_path / "text", names)
    with pytest.raises(PipelineError, match=r"carving 1 test images leaves no training images "
                                            r"\(only 1 left; lower tokenize.test_images\)"):
        tokenize(tmp_path, "flickr30k")


# --- bad input: skipped, counted, one warning line naming the file and the line or key ---------


def good_coco(extra_images=(), extra_annotations=()) -> dict:
    images = [{"id": index, "file_name": name} for index, name in enumerate(GOOD)]
    annotations = [{"image_id": index, "caption": texts[0]} for index, texts in enumerate(GOOD.values())]
    return {"images": images + list(extra_images), "annotations": annotations + list(extra_annotations)}


def good_karpathy(*extra_images) -> dict:
    images = [{"filename": name, "split": "train", "sentences": [{"raw": texts[0]}]}
              for name, texts in GOOD.items()]
    return {"images": images + list(extra_images)}


def token_lines(*extra: str) -> str:
    return "".join(f"{name}#0\t{texts[0]}\n" for name, texts in GOOD.items()) + "".join(extra)


def csv_rows(*extra: str) -> str:
    return "image,caption\n" + "".join(f"{name},{texts[0]}\n" for name, texts in GOOD.items()) + \
        "".join(extra)


SKIPPED = [
    ("flickr30k", "x.token", token_lines("g0.jpg#1\t ?!\n"), "empty_caption", 11),
    ("flickr30k", "x.token", token_lines("gone.jpg#0\tA dog\n"), "image_missing", 11),
    ("flickr30k", "x.token", token_lines("g0.jpg#1 no tab\n"), "malformed_line", 11),
    ("csv", "captions.csv", csv_rows("g0.jpg, ?!\n"), "empty_caption", 12),
    ("csv", "captions.csv", csv_rows("gone.jpg,a dog\n"), "image_missing", 12),
    ("csv", "captions.csv", csv_rows("g0.jpg,a dog,on grass\n"), "malformed_line", 12),
    ("csv", "captions.csv", csv_rows(",a dog\n"), "missing_image", 12),
    ("csv", "captions.csv", csv_rows("g0.jpg,a \udcff dog\n"), "invalid_utf8", 12),
    ("coco", "captions_train2014.json", good_coco([], [{"image_id": 0}]),
     "missing_key", "annotations[10].caption"),
    ("coco", "captions_train2014.json", good_coco([], [{"image_id": 99, "caption": "a dog"}]),
     "unknown_image_id", "annotations[10].image_id"),
    ("coco", "captions_train2014.json", good_coco([], [{"image_id": 0, "caption": "..."}]),
     "empty_caption", "annotations[10].caption"),
    ("coco", "captions_train2014.json", good_coco([{"id": 99}]), "missing_key", "images[10].file_name"),
    ("coco", "captions_train2014.json",
     good_coco([{"id": 99, "file_name": "gone.jpg"}], [{"image_id": 99, "caption": "a dog"}]),
     "image_missing", "annotations[10]"),
    ("karpathy", "dataset_x.json", good_karpathy({"split": "train", "sentences": []}),
     "missing_key", "images[10].filename"),
    ("karpathy", "dataset_x.json", good_karpathy({"filename": "g0.jpg", "split": "train",
                                                  "sentences": [{"raw": "a dog"}, {"tokens": []}]}),
     "missing_key", "images[10].sentences[1].raw"),
    ("karpathy", "dataset_x.json", good_karpathy({"filename": "gone.jpg", "split": "test",
                                                  "sentences": [{"raw": "a dog"}]}),
     "image_missing", "images[10].sentences[0].raw"),
]


def write_text(text_dir: Path, file_name: str, content) -> None:
    text_dir.mkdir(parents=True, exist_ok=True)
    data = json.dumps(content) if isinstance(content, dict) else content
    (text_dir / file_name).write_bytes(data.encode("utf-8", errors="surrogateescape"))


@pytest.mark.parametrize(("format_name", "file_name", "content", "reason", "place"), SKIPPED)
def test_bad_entries_are_skipped_counted_and_named(tmp_path, capsys, format_name, file_name, content,
                                                   reason, place):
    touch_images(tmp_path / "images", GOOD)
    write_text(tmp_path / "text", file_name, content)
    result = tokenize(tmp_path, format_name)
    assert result.metrics["dropped_captions"] == {reason: 1}
    assert result.metrics["dropped_first_line"] == {reason: place}
    first = f"line {place}" if isinstance(place, int) else place
    assert capsys.readouterr().err.splitlines() == [
        f"warning: {tmp_path / 'text' / file_name}: skipped 1 entries ({reason}), the first at {first}"]
    assert sum(split["images"] for split in result.metrics["splits"].values()) == 10


def test_an_image_without_captions_is_counted_and_warned_once(tmp_path, capsys):
    touch_images(tmp_path / "images", [*GOOD, "bare.jpg", "sub/bare2.png"])
    write_flickr30k(tmp_path / "text", GOOD)
    result = tokenize(tmp_path, "flickr30k")
    assert result.metrics["images_without_captions"] == 2
    assert capsys.readouterr().err.splitlines() == [
        f"warning: {tmp_path / 'images'}: 2 images have no caption and are left out, the first bare.jpg"]


# --- bad input that stops the stage: one line naming the file and the line or key -------------

FATAL = [
    ("csv", "captions.csv", "image,text\ng0.jpg,a dog\n",
     r"captions.csv: line 1: no 'caption' column in the header \(expected image,caption\[,split\]; "
     r"found 'image', 'text'\)"),
    ("csv", "captions.csv", "image,caption,split\ng0.jpg,a dog,train\ng1.jpg,a dog,dev\n",
     r"captions.csv: line 3: unknown split 'dev' \(expected one of test, train, val\)"),
    ("csv", "captions.csv", "image,caption,split\ng0.jpg,a dog,train\ng0.jpg,a dog,test\n",
     r"captions.csv: line 3: image 'g0.jpg' is given split 'test' here and 'train' before"),
    ("karpathy", "dataset_x.json", good_karpathy({"filename": "g0.jpg", "split": "holdout"}),
     r"dataset_x.json: images\[10\].split: unknown split 'holdout' \(expected one of restval, test, "),
    ("coco", "captions_train2014.json", {"images": [{"id": 1, "file_name": "g0.jpg"}]},
     r"captions_train2014.json: no annotations\[\] entries \(missing or empty key\)"),
    ("coco", "captions_train2014.json", '{"images": [', r"captions_train2014.json: not valid JSON"),
    ("coco", "captions_2017.json", good_coco(),
     r"captions_2017.json: cannot tell its split from its name \(expected 'train' or 'val' in it\)"),
    ("flickr30k", "x.token", "no captions here\n",
     r"x.token: no usable 'IMAGE.jpg#N<TAB>caption' lines"),
    ("coco", "captions.csv", csv_rows(), r"text: no captions_\*.json for tokenize.format=coco"),
]


@pytest.mark.parametrize(("format_name", "file_name", "content", "message"), FATAL)
def test_bad_input_that_cannot_be_skipped_stops_with_one_line(tmp_path, format_name, file_name,
                                                              content, message):
    touch_images(tmp_path / "images", GOOD)
    write_text(tmp_path / "text", file_name, content)
    with pytest.raises(PipelineError, match=message) as raised:
        tokenize(tmp_path, format_name)
    assert "\n" not in str(raised.value)


def test_a_name_matching_images_in_two_folders_is_refused(tmp_path):
    touch_images(tmp_path / "images", ["train2014/g0.jpg", "val2014/g0.jpg"])
    write_text(tmp_path / "text", "captions_train2014.json", good_coco())
    with pytest.raises(PipelineError, match=r"captions_train2014.json: images\[0\]: image 'g0.jpg' "
                                            r"matches 2 images \(train2014/g0.jpg, val2014/g0.jpg\)"):
        tokenize(tmp_path, "coco")


def test_two_token_files_are_refused(tmp_path):
    touch_images(tmp_path / "images", GOOD)
    write_text(tmp_path / "text", "a.token", token_lines())
    write_text(tmp_path / "text", "b.token", token_lines())
    with pytest.raises(PipelineError, match=r"several \*.token files \(a.token, b.token\); keep one"):
        tokenize(tmp_path, "flickr30k")



# --- a single captions file, named as the user likes: read in the chosen format, named in messages
# as the user gave it -----------------------------------------------------------------------------


def download_and_tokenize(tmp_path: Path, format_name: str, text_url: str) -> Result:
    """The download stage's library call on a folder of GOOD's images and `text_url`, then tokenize."""
    touch_images(tmp_path / "photos", GOOD)
    raw = tmp_path / "raw"
    download(download_settings(tmp_path / "photos", text_url, max_unpacked_mb=10), raw)
    return tokenize(raw, format_name, raw / RAW_TEXT_SOURCE.name, val_images=2, test_images=2)


SINGLE_FILES = [
    ("csv", "my_photos.csv", csv_rows()),
    ("karpathy", "annotations.json", good_karpathy()),
    ("coco", "annotations.json", good_coco()),
    ("flickr30k", "captions_2024.txt", token_lines()),
]


@pytest.mark.parametrize(("format_name", "file_name", "content"), SINGLE_FILES,
                         ids=[case[0] for case in SINGLE_FILES])
def test_a_single_file_is_read_in_the_chosen_format_whatever_its_name(tmp_path, format_name,
                                                                       file_name, content):
    write_text(tmp_path / "given", file_name, content)
    result = download_and_tokenize(tmp_path, format_name, str(tmp_path / "given" / file_name))
    assert result.metrics["format"] == format_name
    assert sorted(image for split in ("train", "val", "test") for image in result.images(split)) == \
        sorted(GOOD)


def test_auto_on_a_single_file_with_an_unknown_name_says_to_set_the_format(tmp_path):
    given = tmp_path / "given/my_photos.csv"
    write_text(given.parent, given.name, csv_rows())
    with pytest.raises(PipelineError) as raised:
        download_and_tokenize(tmp_path, AUTO, str(given))
    assert str(raised.value).startswith(f"{given}: cannot tell the file's format from its name (")
    assert str(raised.value).endswith("; set tokenize.format")


def test_a_single_file_is_no_flickr8k_collection_and_the_error_says_what_is(tmp_path):
    given = tmp_path / "given/captions_2024.txt"
    write_text(given.parent, given.name, token_lines())
    with pytest.raises(PipelineError, match=r"set tokenize.format=flickr30k$") as raised:
        download_and_tokenize(tmp_path, "flickr8k", str(given))
    assert str(raised.value).startswith(f"{given}: tokenize.format=flickr8k reads Flickr8k.token.txt ")


BAD_SINGLE_FILES = [
    ("csv", "wrong_header.csv", "photo,text\ng0.jpg,a dog\n",
     ": line 1: no 'image' column in the header (expected image,caption[,split]; found 'photo', "
     "'text')"),
    ("karpathy", "annotations.json", '{"images": [', ": not valid JSON: "),
    ("coco", "annotations.json", '{"images": [}', ": not valid JSON: "),
]


@pytest.mark.parametrize(("format_name", "file_name", "content", "problem"), BAD_SINGLE_FILES,
                         ids=[case[0] for case in BAD_SINGLE_FILES])
def test_a_bad_single_file_stops_with_one_line_naming_it_as_given(tmp_path, format_name, file_name,
                                                                  content, problem):
    given = tmp_path / "given" / file_name
    write_text(given.parent, file_name, content)
    with serve_directory(given.parent) as server:
        for run, text_url in enumerate((str(given), server.url_for(file_name))):
            with pytest.raises(PipelineError) as raised:
                download_and_tokenize(tmp_path / f"run_{run}", format_name, text_url)
            assert str(raised.value).startswith(f"{text_url}{problem}")
            assert "\n" not in str(raised.value)


def test_a_skipped_line_is_named_by_the_file_as_given(tmp_path, capsys):
    given = tmp_path / "given/my_photos.csv"
    write_text(given.parent, given.name, csv_rows("g0.jpg, ?!\n"))
    download_and_tokenize(tmp_path, "csv", str(given))
    assert capsys.readouterr().err.splitlines() == [
        f"warning: {given}: skipped 1 entries (empty_caption), the first at line 12"]


def test_a_file_from_an_archive_is_named_by_the_archive_as_given_and_its_member(tmp_path):
    archive = tmp_path / "given/captions.zip"
    archive.parent.mkdir()
    with zipfile.ZipFile(archive, "w") as handle:
        handle.writestr("text/captions.csv", "photo,caption\ng0.jpg,a dog\n")
    with pytest.raises(PipelineError) as raised:
        download_and_tokenize(tmp_path, "csv", str(archive))
    assert str(raised.value).startswith(f"{archive} (captions.csv): line 1: no 'image' column")
