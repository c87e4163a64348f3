"""export --out is checked before anything is loaded: every bad path is one line, and a folder
export created is removed when the export fails."""

from __future__ import annotations

import sys

import pytest

from captioner.__main__ import main
from captioner.core.errors import PipelineError


def export(monkeypatch, capsys, out: str, model: str) -> tuple[int, str]:
    """Runs `python -m captioner export --out OUT --model MODEL` with all the decoding flags (so
    in a folder without params.yaml); its exit code and stderr."""
    monkeypatch.setattr(sys, "argv", ["captioner", "export", "--out", out, "--model", model,
                                      "--beam-size", "1", "--length-penalty", "0",
                                      "--max-length", "5"])
    with pytest.raises(SystemExit) as exit_status:
        main()
    return exit_status.value.code, capsys.readouterr().err


@pytest.mark.parametrize(("make", "problem"), [
    (lambda tmp: (tmp / "out").symlink_to(tmp / "missing"),
     "already exists (a symbolic link to {tmp}/missing); give a new folder"),
    (lambda tmp: (tmp / "out").mkdir(), "already exists (a folder); give a new folder"),
    (lambda tmp: None, None),
])
def test_an_out_path_that_exists_is_refused_before_the_model_is_loaded(
        tmp_path, monkeypatch, capsys, make, problem):
    monkeypatch.chdir(tmp_path)
    make(tmp_path)
    out = tmp_path / "out"
    # The model does not exist: a check of --out that came after loading would never be reached.
    code, error = export(monkeypatch, capsys, str(out), str(tmp_path / "no_model.keras"))
    assert code == 2
    if problem is None:
        assert error.startswith(f"error: {tmp_path}/no_model.keras: no such model")
        assert not out.exists()  # created for the export, removed when it failed
    else:
        assert error == f"error: --out {out}: {problem.format(tmp=tmp_path)}\n"


@pytest.mark.parametrize(("out", "problem"), [
    ("/proc/captioner_export", "cannot create it: No such file or directory"),
    ("/nowhere/at/all/export", "its folder /nowhere/at/all does not exist"),
    ("/etc/hostname/export", "its folder /etc/hostname is not a folder"),
])
def test_an_out_path_that_cannot_be_created_is_one_line(tmp_path, monkeypatch, capsys, out,
                                                        problem):
    monkeypatch.chdir(tmp_path)
    code, error = export(monkeypatch, capsys, out, str(tmp_path / "no_model.keras"))
    assert (code, error) == (2, f"error: --out {out}: {problem}\n")


def test_an_export_that_fails_while_writing_leaves_no_folder(tmp_path, monkeypatch, capsys):
    import captioner.inference.captioning as captioning
    import captioner.inference.export as exporting

    def failing_write(captioner, folder):
        (folder / "variables").mkdir()
        raise PipelineError(f"--out {folder}: cannot write the SavedModel: disk full")

    monkeypatch.setattr(captioning, "ImageCaptioner", lambda *arguments: None)
    monkeypatch.setattr(exporting, "export", failing_write)
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    code, error = export(monkeypatch, capsys, str(out), str(tmp_path / "model.keras"))
    assert (code, error) == (2, f"error: --out {out}: cannot write the SavedModel: disk full\n")
    assert not out.exists()
