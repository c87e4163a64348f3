"""Atomic writes clean up what killed runs left of the same output, and nothing else."""

from __future__ import annotations

from captioner.core.files import atomic_path, read_json, write_json


def test_writing_an_output_removes_its_leftovers_only(tmp_path):
    for leftover in (".scores.json.tmp-k1ll3d00", ".scores.json.tmp-old", ".other.json.tmp-k1ll3d00"):
        (tmp_path / leftover).mkdir()
        (tmp_path / leftover / "half_written").write_text("{")
    write_json(tmp_path / "scores.json", {"bleu4": 0.2})
    assert read_json(tmp_path / "scores.json") == {"bleu4": 0.2}
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.json.tmp-k1ll3d00", "scores.json"]


def test_a_folder_output_is_replaced_whole(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "stale.txt").write_text("old run")
    with atomic_path(tmp_path / "out") as folder:
        folder.mkdir()
        (folder / "new.txt").write_text("new run")
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
