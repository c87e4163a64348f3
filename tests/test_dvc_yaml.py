"""dvc.yaml declares, for every stage, exactly the code it runs, the params it reads and the data
files it reads and writes (checked by running each stage with Python's audit hooks)."""

from __future__ import annotations

import ast
import dataclasses
import importlib
import shutil
from pathlib import Path

import pytest
import yaml
from dvc.repo import Repo

from captioner.core import params, paths
from tests.helpers.project import ROOT, STAGES, declared_outputs, run, set_params
from tests.helpers.stage_audit import (
    SCRATCH,
    code_closure,
    covered,
    params_read,
    section_keys,
    touched_paths,
)
from tests.helpers.training import train_project

# Knobs that change how fast a stage runs but not what it writes: declaring them would rerun the
# stage (and everything after it) for nothing. tests/test_features.py proves the decoded pixels identical.
SPEED_ONLY = {"extract_features.decode_threads"}
PACKAGE_DOCSTRINGS = {"captioner/__init__.py", "stages/__init__.py"}
# The stage that reports the params of every stage but download in the model card: it shares them
# with the stages they belong to.
REPORTS_PARAMS = "publish"
# Deps a stage reads only for some params: the folder of files the pretrained params may name, and
# the placed CNN weights, which publish's CNN reads when extract_features.weights names a file.
READ_FOR_SOME_PARAMS = {"pretrained": {str(paths.PRETRAINED_SOURCES)},
                        "publish": {str(paths.PRETRAINED_WEIGHTS)}}


def code_deps(files: set[str]) -> set[str]:
    """What dvc.yaml declares for these files: stage scripts by file, the library by subpackage
    folder; the two top-level package __init__s, docstrings only, are left out."""
    return {file if file.startswith("stages/") else "/".join(file.split("/")[:2])
            for file in files - PACKAGE_DOCSTRINGS}


def test_the_top_level_packages_hold_only_a_docstring():
    for init in PACKAGE_DOCSTRINGS:
        body = ast.parse((ROOT / init).read_text()).body
        assert len(body) == 1 and isinstance(body[0].value, ast.Constant), init


@pytest.mark.parametrize("name", list(STAGES))
def test_stage_code_deps_are_its_script_and_the_library_folders_it_imports(name):
    stage = STAGES[name]
    script_module = stage["cmd"].removeprefix("python -m ")
    declared = {dep for dep in stage["deps"] if dep.startswith(("stages/", "captioner/"))}
    assert declared == code_deps(code_closure(script_module))


@pytest.mark.parametrize("name", list(STAGES))
def test_stage_params_are_the_keys_it_reads(name):
    script = ROOT / (STAGES[name]["cmd"].removeprefix("python -m ").replace(".", "/") + ".py")
    assert set(declared_params(STAGES[name])) == params_read(script) - SPEED_ONLY


def declared_params(stage: dict) -> list[str]:
    """A stage's params keys, a whole section (`train`) standing for all of its keys."""
    return [key for entry in stage["params"]
            for key in (sorted(section_keys(entry)) if entry in params.SECTIONS else [entry])]


def test_every_param_belongs_to_one_stage():
    declared = [key for name, stage in STAGES.items() if name != REPORTS_PARAMS
                for key in declared_params(stage)]
    assert sorted(declared) == sorted(set().union(*map(section_keys, params.SECTIONS)) - SPEED_ONLY)


def test_params_yaml_parses_into_every_section():
    document = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert set(document) == set(params.SECTIONS)
    for name, section_class in params.SECTIONS.items():
        params.parse(section_class, name, document[name])


def assert_reads_and_writes_as_declared(project: Path, name: str, events_file: Path,
                                        extra_env: dict[str, str] | None = None) -> None:
    deps = {dep for dep in STAGES[name]["deps"] if not dep.startswith(("stages/", "captioner/"))}
    outs = set(declared_outputs(name))
    reads, writes = touched_paths(project, name, events_file, extra_env)
    # Listing an out's parent folder (to clear a killed run's temporaries) reads no data; a file
    # below that folder is data all the same.
    parents = {str(parent) for out in outs for parent in Path(out).parents}
    assert {path for path in reads if not covered(path, deps | outs) and path not in parents} \
        == set(), name
    assert {path for path in writes if not covered(path, outs)} == set(), name
    assert {dep for dep in deps - READ_FOR_SOME_PARAMS.get(name, set())
            if not any(covered(path, {dep}) for path in reads)} == set(), name
    assert {out for out in outs if not any(covered(path, {out}) for path in writes)} == set(), name


@pytest.mark.slow
def test_stages_read_and_write_exactly_what_dvc_yaml_declares(built_project, tmp_path):
    project = built_project.clone(tmp_path / "project")
    for name in STAGES:
        assert_reads_and_writes_as_declared(project, name, tmp_path / f"{name}.json")


def test_train_reads_and_writes_what_dvc_yaml_declares_on_tiny_inputs(tmp_path):
    # The fast twin of the test above for the stage with the most inputs: one epoch of a tiny run.
    project = train_project(tmp_path / "project", "none")
    set_params(project, {"train": {"epochs": 1, "save_every_epoch": False}})
    assert_reads_and_writes_as_declared(project, "train", tmp_path / "train.json",
                                        {"PYTHONPATH": str(ROOT)})


def test_python_caches_in_the_code_folders_are_not_part_of_a_stage_s_deps(tmp_path):
    # Stages depend on code folders: a __pycache__ written by any run must not change their hash.
    (tmp_path / "captioner/core/__pycache__").mkdir(parents=True)
    (tmp_path / "captioner/core/paths.py").write_text("")
    (tmp_path / "captioner/core/__pycache__/paths.cpython-311.pyc").write_bytes(b"\0")
    (tmp_path / "captioner/core/stray.pyc").write_bytes(b"\0")
    shutil.copy(ROOT / ".dvcignore", tmp_path)
    run(["git", "init", "-q"], tmp_path)
    repo = Repo.init(str(tmp_path))
    assert sorted(repo.dvcfs.find("captioner")) == ["captioner/core/paths.py"]


def related(path: str, declared: set[str]) -> bool:
    """Whether `path` is a declared path, lies in one, or is a folder holding one."""
    return covered(path, declared) or any(covered(entry, {path}) for entry in declared)


@pytest.mark.parametrize("name", ["train", "evaluate", "publish"])
def test_the_paths_a_stage_script_passes_are_its_declared_data(name):
    # The fast twin of the audit above for the stages that name their paths in INPUTS and OUTPUTS
    # (publish: its one output folder, PUBLISHED).
    script = importlib.import_module(f"stages.{name}")
    data_deps = {dep for dep in STAGES[name]["deps"] if not dep.startswith(("stages/", "captioner/"))
                 } - READ_FOR_SOME_PARAMS.get(name, set())
    inputs = {str(path) for path in dataclasses.asdict(script.INPUTS).values()}
    outputs = ({str(script.PUBLISHED)} if name == "publish" else
               {str(path) for path in dataclasses.asdict(script.OUTPUTS).values()} - SCRATCH)
    assert {path for path in inputs if not covered(path, data_deps)} == set()
    assert {dep for dep in data_deps if not related(dep, inputs)} == set()
    assert {path for path in outputs if not related(path, set(declared_outputs(name)))} == set()
