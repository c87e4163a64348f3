"""The predict command: unusable models are refused in one line, non-image files are reported."""

from __future__ import annotations

import json
import os
import sys
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

from captioner.__main__ import main
from captioner.core.text import SPECIAL_TOKENS
from captioner.model.artifacts import model_info_path, save_model
from captioner.model.network import build_captioner

VOCABULARY = [*SPECIAL_TOKENS, "a", "dog", "cat", "runs"]
LITE0_DIM = 1280


def saved_model(folder: Path, feature_dim: int = LITE0_DIM,
                backbone: str = "efficientnet_lite0", regions: int | None = None) -> Path:
    """An untrained captioner saved as the train stage saves one; with `regions`, one with the
    attention decoder."""
    embedding = np.random.default_rng(0).normal(size=(len(VOCABULARY), 4)).astype(np.float32)
    model = build_captioner(embedding, feature_dim=feature_dim, units=8, rnn="gru", dropout=0.0,
                            train_embedding=False, regions=regions, attention_units=8)
    path = folder / "model.keras"
    save_model(model, path, VOCABULARY, {"backbone": backbone, "weights": "imagenet",
                                         "dim": LITE0_DIM, "batch_size": 4})
    return path


def predict(monkeypatch, capsys, *arguments: str) -> tuple[int, list[str], list[str]]:
    """Runs `python -m captioner predict ARGUMENTS`; its exit code, stdout lines, error lines."""
    monkeypatch.setattr(sys, "argv", ["captioner", "predict", *arguments])
    with pytest.raises(SystemExit) as exit_status:
        main()
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if line.startswith("error:")]
    return exit_status.value.code, captured.out.splitlines(), errors


def test_missing_model_is_one_line(tmp_path, monkeypatch, capsys):
    model = tmp_path / "nowhere" / "model.keras"
    code, output, errors = predict(monkeypatch, capsys, str(tmp_path), "--model", str(model))
    assert (code, output) == (2, [])
    assert errors == [f"error: {model}: no such model (run `dvc repro train` first)"]


def test_model_with_another_vocabulary_is_refused(tmp_path, monkeypatch, capsys):
    model = saved_model(tmp_path)
    info = model_info_path(model)
    description = json.loads(info.read_text())
    description["vocabulary"] = VOCABULARY[:-2]
    info.write_text(json.dumps(description))
    code, _, errors = predict(monkeypatch, capsys, str(tmp_path), "--model", str(model))
    assert code == 2
    assert errors == [f"error: {info}: vocabulary has 6 words but the model predicts 8"]


@pytest.mark.parametrize(("content", "problem"), [
    ("{", "not a model description: JSONDecodeError('Expecting property name enclosed in double "
          "quotes: line 1 column 2 (char 1)')"),
    ('{"vocabulary": ["a"]}', "not a model description: KeyError('backbone')"),
    ('{"vocabulary": "a b", "backbone": {}}', "'vocabulary' must be a list of words"),
])
def test_unreadable_model_description_is_refused(tmp_path, monkeypatch, capsys, content, problem):
    model = saved_model(tmp_path)
    model_info_path(model).write_text(content)
    code, _, errors = predict(monkeypatch, capsys, str(tmp_path), "--model", str(model))
    assert code == 2
    assert errors == [f"error: {model_info_path(model)}: {problem}"]


def test_model_for_another_backbone_is_refused(tmp_path, monkeypatch, capsys):
    model = saved_model(tmp_path, feature_dim=16)
    code, _, errors = predict(monkeypatch, capsys, str(tmp_path), "--model", str(model))
    assert code == 2
    assert errors == [f"error: {model}: expects image features shaped (16,) but efficientnet_lite0 "
                      f"gives ({LITE0_DIM},)"]


def test_model_with_an_unknown_backbone_is_refused(tmp_path, monkeypatch, capsys):
    model = saved_model(tmp_path, backbone="vgg16")
    code, _, errors = predict(monkeypatch, capsys, str(tmp_path), "--model", str(model))
    assert code == 2
    assert errors == [f"error: {model_info_path(model)}: unknown backbone 'vgg16' "
                      "(known: efficientnet_lite0, efficientnet_lite1, efficientnet_lite2, resnet50)"]


def test_non_image_files_in_a_folder_are_reported_and_the_rest_captioned(
        tmp_path, monkeypatch, capsys):
    model = saved_model(tmp_path)
    photos = tmp_path / "photos"
    photos.mkdir()
    for index, colour in enumerate(((200, 30, 30), (30, 30, 200))):
        Image.new("RGB", (50, 40), colour).save(photos / f"photo_{index}.jpg")
    (photos / "notes.txt").write_text("not a picture")
    code, output, errors = predict(monkeypatch, capsys, str(photos), "--model", str(model),
                                   "--beam-size", "1")
    assert code == 1
    assert [line.split("\t")[0] for line in output] == \
        [str(photos / "photo_0.jpg"), str(photos / "photo_1.jpg")]
    assert errors == [f"error: {photos / 'notes.txt'}: not an image Pillow can read"]


def test_a_file_name_that_is_not_utf8_is_one_line_and_the_rest_captioned(tmp_path, monkeypatch, capsys):
    model = saved_model(tmp_path)
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.new("RGB", (50, 40), (200, 30, 30)).save(photos / "good.jpg")
    (photos / os.fsdecode(b"bad\xff.jpg")).write_bytes((photos / "good.jpg").read_bytes())
    code, output, errors = predict(monkeypatch, capsys, str(photos), "--model", str(model))
    assert code == 1
    assert [line.split("\t")[0] for line in output] == [str(photos / "good.jpg")]
    assert errors == [f"error: {photos}/bad\\xff.jpg: the file name is not UTF-8; rename it"]


def test_a_model_whose_config_names_an_unknown_class_is_one_line(tmp_path, monkeypatch, capsys):
    (tmp_path / "good").mkdir()
    model = saved_model(tmp_path / "good")
    crafted = tmp_path / "model.keras"
    with zipfile.ZipFile(model) as source, zipfile.ZipFile(crafted, "w") as target:
        for item in source.infolist():
            data = source.read(item.filename)
            if item.filename == "config.json":
                data = data.replace(b'"class_name": "GRU"', b'"class_name": "NoSuchLayer"')
            target.writestr(item, data)
    model_info_path(crafted).write_text(model_info_path(model).read_text())
    code, _, errors = predict(monkeypatch, capsys, str(tmp_path), "--model", str(crafted))
    assert code == 2
    assert errors == [f"error: {crafted}: cannot load the model: Could not deserialize "
                      "'keras.layers.NoSuchLayer' because it is not a KerasSaveable subclass"]


def test_a_keras_model_that_is_not_a_captioner_is_one_line(tmp_path, monkeypatch, capsys):
    (tmp_path / "good").mkdir()
    model = saved_model(tmp_path / "good")
    inputs = [keras.Input((4,), name="image_features"), keras.Input((None,), dtype="int32")]
    other = keras.Model(inputs, keras.layers.Dense(3, name="scores")(inputs[0]))
    stranger = tmp_path / "model.keras"
    other.save(stranger)
    model_info_path(stranger).write_text(model_info_path(model).read_text())
    code, _, errors = predict(monkeypatch, capsys, str(tmp_path), "--model", str(stranger))
    assert code == 2
    assert len(errors) == 1
    assert errors[0].startswith(f"error: {stranger}: not a caption model of this project: ")
    assert "image_dropout" in errors[0]


def test_attention_maps_are_drawn_for_every_captioned_image(tmp_path, monkeypatch, capsys):
    pictures = tmp_path / "pictures"
    pictures.mkdir()
    for name, colour in (("red one.jpg", (200, 30, 30)), ("blue.png", (30, 30, 200))):
        Image.new("RGB", (120, 90), colour).save(pictures / name)
    (pictures / "notes.txt").write_text("not an image")
    model = saved_model(tmp_path, regions=49)
    maps = tmp_path / "maps"
    code, output, errors = predict(monkeypatch, capsys, str(pictures), "--model", str(model),
                                   "--beam-size", "2", "--max-length", "4", "--length-penalty", "0",
                                   "--attention-maps", str(maps))
    assert code == 1 and errors == [f"error: {pictures / 'notes.txt'}: not an image Pillow can read"]
    figures = [line.split("\t") for line in output]
    assert [(image, figure) for image, _, figure in figures] == [
        (str(pictures / "blue.png"), str(maps / "001_blue.png")),
        (str(pictures / "red one.jpg"), str(maps / "002_red_one.png"))]
    for _, caption, figure in figures:
        with Image.open(figure) as drawn:
            # The photo, then a panel per word, five to a row, each under its word.
            panels = 1 + len(caption.split())
            assert drawn.size == (5 * 160, -(-panels // 5) * (160 + 24))


def test_attention_maps_of_a_model_that_does_not_attend_are_one_line(tmp_path, monkeypatch,
                                                                     capsys):
    model = saved_model(tmp_path)
    code, output, errors = predict(monkeypatch, capsys, str(tmp_path), "--model", str(model),
                                   "--attention-maps", str(tmp_path / "maps"))
    assert (code, output) == (2, [])
    assert errors == [f"error: {model}: has no attention decoder (train.decoder attention), so no "
                      "attention maps"]
    assert not (tmp_path / "maps").exists()


def test_every_folder_entry_not_captioned_is_named_and_none_of_them_is_read(
        tmp_path, monkeypatch, capsys):
    model = saved_model(tmp_path)
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.new("RGB", (50, 40), (200, 30, 30)).save(photos / "good.jpg")
    os.mkfifo(photos / "fifo.jpg")  # opening it to read would wait for a writer for ever
    (photos / "zero.jpg").symlink_to("/dev/zero")
    (photos / "gone.jpg").symlink_to(tmp_path / "deleted.jpg")
    (photos / "loop_a.jpg").symlink_to(photos / "loop_b.jpg")
    (photos / "loop_b.jpg").symlink_to(photos / "loop_a.jpg")
    (photos / "album").mkdir()
    (photos / ".DS_Store").write_bytes(b"\0")
    code, output, errors = predict(monkeypatch, capsys, str(photos), "--model", str(model),
                                   "--beam-size", "1")
    assert code == 1
    assert [line.split("\t")[0] for line in output] == [str(photos / "good.jpg")]
    assert errors == [
        f"error: {photos / 'fifo.jpg'}: a FIFO (named pipe), not a file",
        f"error: {photos / 'gone.jpg'}: a symbolic link to {tmp_path / 'deleted.jpg'}, which does "
        "not exist",
        f"error: {photos / 'loop_a.jpg'}: a symbolic link that loops",
        f"error: {photos / 'loop_b.jpg'}: a symbolic link that loops",
        f"error: {photos / 'zero.jpg'}: a device, not a file"]


def test_skipped_entries_of_a_folder_are_named_without_failing(tmp_path, monkeypatch, capsys):
    model = saved_model(tmp_path)
    photos = tmp_path / "photos"
    (photos / "album").mkdir(parents=True)
    Image.new("RGB", (50, 40), (200, 30, 30)).save(photos / "good.jpg")
    (photos / ".DS_Store").write_bytes(b"\0")
    monkeypatch.setattr(sys, "argv", ["captioner", "predict", str(photos), "--model", str(model),
                                      "--beam-size", "1"])
    with pytest.raises(SystemExit) as exit_status:
        main()
    assert exit_status.value.code == 0
    assert capsys.readouterr().err.splitlines() == [
        f"skipped: {photos / '.DS_Store'}: a hidden file",
        f"skipped: {photos / 'album'}: a folder (predict looks only at the files of the folders "
        "it is given)"]


@pytest.mark.parametrize(("named", "problem"), [
    ("/proc/self/mem", "cannot be read: Input/output error"),
    ("/dev/null", "a device, not a file"),
    ("/nowhere/photo.jpg", "no such file"),
])
def test_a_named_path_that_is_not_a_readable_file_is_one_line(tmp_path, monkeypatch, capsys,
                                                               named, problem):
    model = saved_model(tmp_path)
    code, output, errors = predict(monkeypatch, capsys, named, "--model", str(model))
    assert (code, output) == (1, [])
    assert errors == [f"error: {named}: {problem}"]


def test_a_folder_given_as_the_model_is_the_model_it_holds(tmp_path, monkeypatch, capsys):
    model = saved_model(tmp_path / "published")
    Image.new("RGB", (50, 40), (200, 30, 30)).save(tmp_path / "photo.jpg")
    by_file = predict(monkeypatch, capsys, str(tmp_path / "photo.jpg"), "--model", str(model),
                      "--beam-size", "1")
    by_folder = predict(monkeypatch, capsys, str(tmp_path / "photo.jpg"), "--model",
                        str(model.parent), "--beam-size", "1")
    assert by_file[0] == 0 and by_folder == by_file
    code, _, errors = predict(monkeypatch, capsys, str(tmp_path / "photo.jpg"), "--model",
                              str(tmp_path))
    assert code == 2
    assert errors == [f"error: {tmp_path / 'model.keras'}: no such model (run `dvc repro train` "
                      "first)"]



def test_a_name_with_a_newline_is_shown_on_one_line(tmp_path, monkeypatch, capsys):
    model = saved_model(tmp_path)
    photos = tmp_path / "photos"
    photos.mkdir()
    os.mkfifo(photos / "two\nlines.jpg")
    code, output, errors = predict(monkeypatch, capsys, str(photos), "--model", str(model))
    assert (code, output) == (1, [])
    assert errors == [f"error: {photos}/two\\nlines.jpg: a FIFO (named pipe), not a file"]


def test_a_folder_that_cannot_be_listed_is_one_line(tmp_path, monkeypatch, capsys):
    model = saved_model(tmp_path)
    locked = tmp_path / "locked"
    locked.mkdir()
    listing = Path.iterdir

    def refusing(self):  # root may list any folder, so the refusal is simulated
        if self == locked:
            raise PermissionError(13, "Permission denied", str(self))
        return listing(self)

    monkeypatch.setattr(Path, "iterdir", refusing)
    code, output, errors = predict(monkeypatch, capsys, str(locked), "--model", str(model))
    assert (code, output) == (1, [])
    assert errors == [f"error: {locked}: cannot list it: Permission denied"]
