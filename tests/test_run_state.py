"""A run folder resumes only the run it belongs to: the settings and input bytes' fingerprint must
match and the checkpoint of its last epoch must be there; anything else starts afresh. A run's
progress keeps the best epoch of each phase."""

from __future__ import annotations

from dataclasses import asdict

import pytest

from captioner.core.files import write_json
from captioner.core.phases import SELF_CRITICAL
from captioner.training.run_state import Progress, RunFolder, fingerprint


def saved_run(folder, run_fingerprint: str) -> RunFolder:
    """A run folder holding two finished epochs and the checkpoint of the second."""
    run = RunFolder(folder)
    progress = Progress(run_fingerprint, history=[{"phase": "cross_entropy", "loss": 2.0}] * 2,
                        best=2.0, best_epoch=2)
    folder.mkdir()
    write_json(run.progress_file, asdict(progress))
    run.checkpoint(2).write_bytes(b"model")
    return run


def test_the_same_fingerprint_resumes_after_the_last_epoch(tmp_path):
    run = saved_run(tmp_path / "run", "a" * 64)
    progress = run.resume_or_clear("a" * 64)
    assert (progress.epochs_done, progress.best_epoch) == (2, 2)
    assert run.checkpoint(2).is_file()


@pytest.mark.parametrize("change", ["fingerprint", "checkpoint"])
def test_another_fingerprint_or_a_missing_checkpoint_starts_afresh(tmp_path, change):
    run = saved_run(tmp_path / "run", "a" * 64)
    if change == "checkpoint":
        run.checkpoint(2).unlink()
    progress = run.resume_or_clear("b" * 64 if change == "fingerprint" else "a" * 64)
    assert progress.epochs_done == 0 and progress.best is None
    assert not run.folder.exists()


def test_the_fingerprint_changes_with_a_setting_and_with_an_input_byte(tmp_path):
    inputs = tmp_path / "inputs"
    (inputs / "nested").mkdir(parents=True)
    (inputs / "nested" / "data.bin").write_bytes(b"0123")
    first = fingerprint({"units": 64}, [inputs])
    assert fingerprint({"units": 64}, [inputs]) == first
    assert fingerprint({"units": 32}, [inputs]) != first
    (inputs / "nested" / "data.bin").write_bytes(b"0124")
    assert fingerprint({"units": 64}, [inputs]) != first


def test_progress_keeps_the_best_of_each_phase_by_that_phase_s_monitor():
    progress = Progress("fingerprint")
    assert progress.record({"val_loss": 2.0}, "val_loss")
    assert not progress.record({"val_loss": 2.5}, "val_loss")
    assert (progress.best, progress.best_epoch, progress.epochs_without_improvement) == (2.0, 1, 1)
    progress.begin_phase(SELF_CRITICAL)
    # A CIDEr far below the cross-entropy phase's best loss is still the new phase's first best.
    assert progress.record({"val_cider": 0.5}, "val_cider")
    assert not progress.record({"val_cider": 0.4}, "val_cider")
    assert (progress.phase, progress.best, progress.best_epoch) == (SELF_CRITICAL, 0.5, 3)
