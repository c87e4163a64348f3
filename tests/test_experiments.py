"""What users do next with DVC: change a param and rerun only what it affects, compare experiments.

Every test runs the real `dvc` commands in its own clone of the project built on the drawn collection.
"""

from __future__ import annotations

import json

import pytest

from captioner.core.files import read_json
from tests.helpers.project import (
    FAST_PARAMS,
    commit_all,
    dvc,
    locked_stages,
    run,
    set_params,
    stages_run,
    up_to_date,
)

pytestmark = pytest.mark.slow  # every test here runs real DVC commands

# Each run's self-critical epochs, numbered after its cross-entropy ones.
SELF_CRITICAL_EPOCHS = FAST_PARAMS["train"]["self_critical_epochs"]

# One change per stage's params, and exactly the stages it must rerun, in pipeline order.
ISOLATION = [
    ({"train": {"epochs": 3}}, ["train", "evaluate", "publish"]),
    ({"evaluate": {"beam_size": 2}}, ["evaluate", "publish"]),
    # The drawn captions' rarest words occur 40 times: 45 drops them from the vocabulary.
    ({"tokenize": {"min_count": 45}}, ["tokenize", "embed", "train", "evaluate", "publish"]),
    ({"embed": {"dim": 24}}, ["embed", "train", "evaluate", "publish"]),
    ({"extract_features": {"decode_threads": 1}}, []),
    ({"extract_features": {"backbone": "resnet50", "weights": "none"}},
     ["pretrained", "extract_features", "train", "evaluate", "publish"]),
]


def experiments(project) -> dict[str, dict]:
    """`dvc exp show`'s experiments: name -> their params and metrics."""
    shown = json.loads(dvc("exp", "show", "--json", cwd=project).stdout)
    return {experiment["name"]: experiment["revs"][0]["data"]
            for baseline in shown for experiment in baseline["experiments"] or []}


def lock_hashes(project) -> dict[str, str]:
    """Each stage's output path -> its md5 in dvc.lock."""
    return {out["path"]: out["md5"] for stage in locked_stages(project).values()
            for out in stage["outs"]}


def case_id(change: dict) -> str:
    return next(iter(change)) + "." + next(iter(next(iter(change.values()))))


# Opt-in (--run-long) to keep the default run near ten minutes: a new backbone's features take longest,
# and test_pretrained_pipeline.py reruns the pretrained stage by its params too.
LONG_CASES = {"extract_features.backbone"}


@pytest.mark.parametrize(("change", "expected"), [
    pytest.param(change, expected, marks=pytest.mark.long) if case_id(change) in LONG_CASES
    else (change, expected) for change, expected in ISOLATION],
    ids=[case_id(change) for change, _ in ISOLATION])
def test_a_param_change_reruns_exactly_its_stage_and_those_downstream(built_project, tmp_path,
                                                                      change, expected):
    project = built_project.clone(tmp_path / "project")
    before = lock_hashes(project)
    set_params(project, change)
    output = dvc("repro", cwd=project).stdout
    assert stages_run(output) == expected
    changed_outputs = {path for path, md5 in lock_hashes(project).items() if before[path] != md5}
    rerun_outputs = {out for stage in expected for out in stage_outs(project, stage)}
    assert changed_outputs <= rerun_outputs
    assert up_to_date(project)


def stage_outs(project, stage: str) -> list[str]:
    return [out["path"] for out in locked_stages(project)[stage]["outs"]]


def test_returning_to_earlier_params_restores_from_the_run_cache(built_project, tmp_path):
    project = built_project.clone(tmp_path / "project")
    two_epochs = lock_hashes(project)
    assert stages_run(dvc("exp", "run", "-S", "train.epochs=3", cwd=project).stdout) == [
        "train", "evaluate", "publish"]
    last_of_three = f"models/epochs/epoch_{3 + SELF_CRITICAL_EPOCHS:03d}.keras"
    assert (project / last_of_three).is_file()
    back = dvc("exp", "run", "-S", "train.epochs=2", cwd=project).stdout
    assert stages_run(back) == []
    assert "Stage 'train' is cached - skipping run, checking out outputs" in back
    assert not (project / last_of_three).exists()
    assert lock_hashes(project) == two_epochs


def test_experiments_are_listed_compared_and_plotted(built_project, tmp_path):
    project = built_project.clone(tmp_path / "project")
    dvc("exp", "run", "-n", "three-epochs", "-S", "train.epochs=3", cwd=project)
    dvc("exp", "run", "-n", "greedy", "-S", "evaluate.beam_size=1", cwd=project)

    shown = experiments(project)
    assert set(shown) == {"three-epochs", "greedy"}
    three = shown["three-epochs"]
    assert three["params"]["params.yaml"]["data"]["train"]["epochs"] == 3
    assert "bleu4" in three["metrics"]["metrics/eval.json"]["data"]

    diff = json.loads(dvc("metrics", "diff", "HEAD", "three-epochs", "--all", "--json",
                          cwd=project).stdout)
    committed = json.loads(run(["git", "show", "HEAD:metrics/eval.json"], project).stdout)
    experiment = three["metrics"]["metrics/eval.json"]["data"]
    for metric in ("bleu4", "cider", "rouge_l"):
        change = diff["metrics/eval.json"][metric]
        assert (change["old"], change["new"]) == (committed[metric], experiment[metric])
    # The scores and speeds alone: the data records (sources, sha256s, per-member details) are
    # versioned outputs, not metrics.
    assert set(diff) == {"metrics/eval.json", "metrics/speed/train.json",
                         "metrics/speed/evaluate.json", "metrics/speed/extract_features.json"}
    assert not [name for changes in diff.values() for name in changes if "sha256" in name]
    columns = list(three["metrics"]["metrics/eval.json"]["data"])
    assert columns[:2] == ["bleu4", "cider"]

    html = project / "plots"
    dvc("plots", "diff", "HEAD", "three-epochs", "-o", str(html), cwd=project)
    page = (html / "index.html").read_text()
    assert "Validation BLEU-4 per epoch" in page and "three-epochs" in page


def test_applied_experiment_puts_its_per_epoch_metrics_in_git(built_project, tmp_path):
    project = built_project.clone(tmp_path / "project")
    dvc("exp", "run", "-n", "three-epochs", "-S", "train.epochs=3", cwd=project)
    run(["git", "checkout", "-q", "--", "."], project)
    dvc("exp", "apply", "three-epochs", cwd=project)
    commit_all(project, "three epochs")
    committed = run(["git", "show", "HEAD:metrics/train/epochs.tsv"],
                    project).stdout
    assert len(committed.splitlines()) == 1 + 3 + SELF_CRITICAL_EPOCHS
    # DVCLive's summary is a cached record: dvc.lock names it, the cache holds it.
    assert read_json(project / "data/records/train/metrics.json")["step"] == 3 + SELF_CRITICAL_EPOCHS
    assert "data/records/train/metrics.json" in run(["git", "show", "HEAD:dvc.lock"], project).stdout
    assert read_json(project / "metrics/eval.json") == json.loads(
        run(["git", "show", "HEAD:metrics/eval.json"], project).stdout)


# Opt-in (--run-long) to keep the default run near ten minutes.
@pytest.mark.long
def test_queued_experiments_all_run(built_project, tmp_path):
    project = built_project.clone(tmp_path / "project")
    names = [f"beam-{beam_size}" for beam_size in (1, 2)]
    for beam_size, name in zip((1, 2), names, strict=True):
        dvc("exp", "run", "--queue", "-n", name, "-S", f"evaluate.beam_size={beam_size}",
            cwd=project)
    dvc("queue", "start", cwd=project)
    for name in names:  # follows the experiment's log until its task ends
        dvc("queue", "logs", "--follow", name, cwd=project, timeout=600)
    status = dvc("queue", "status", cwd=project).stdout
    assert status.count("Success") == 2, status
    dvc("queue", "stop", "--kill", cwd=project)
    beams = sorted(data["params"]["params.yaml"]["data"]["evaluate"]["beam_size"]
                   for data in experiments(project).values())
    assert beams == [1, 2]


@pytest.mark.parametrize("options", [[], ["--allow-missing"]], ids=["plain", "allow_missing"])
def test_a_fresh_clone_runs_single_stages_as_an_experiment(built_project, tmp_path, options):
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(built_project.path), str(clone)], tmp_path)
    assert not (clone / ".dvc/cache").exists()
    committed = lock_hashes(clone)
    collection = built_project.collection
    # The same archives by path, a smaller vocabulary and another batch size: with --allow-missing,
    # a stage reruns only for a changed param or dependency, not for its missing outputs.
    output = dvc("exp", "run", *options, "-n", "local-copy",
                 "-S", f"download.images_url={collection.images_zip}",
                 "-S", f"download.text_url={collection.text_zip}",
                 "-S", "tokenize.min_count=45", "-S", "extract_features.batch_size=16",
                 "embed", "extract_features", cwd=clone).stdout
    ran = stages_run(output)
    # Without --allow-missing, the pretrained stage reruns because its folders are not in the cache.
    expected = {"download", "tokenize", "embed", "extract_features"} | (set() if options else {"pretrained"})
    assert set(ran) == expected
    assert set(experiments(clone)) == {"local-copy"}
    after = lock_hashes(clone)
    assert {path: after[path] for path in stage_outs(clone, "train") + stage_outs(clone, "evaluate")} \
        == {path: committed[path] for path in stage_outs(clone, "train") + stage_outs(clone, "evaluate")}
