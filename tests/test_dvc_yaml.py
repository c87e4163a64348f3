"""dvc.yaml declares, for every stage, exactly the code it runs, the params it reads and the data
files it reads and writes (checked by running each stage with Python's audit hooks)."""

from __future__ import annotations

import ast
import dataclasses
import json
import re
import shutil
import sys
from pathlib import Path

import pytest
import yaml
from dvc.repo import Repo

from captioner.core import params, paths
from tests.helpers.project import run, set_params
from tests.helpers.training import train_project

ROOT = Path(__file__).resolve().parents[1]
STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
ATOMIC_TEMPORARY = re.compile(r"\.([^/]+)\.tmp-[^/]+(?:/\1)?")
# Knobs that change how fast a stage runs but not what it writes: declaring them would rerun the
# stage (and everything after it) for nothing. tests/test_features.py proves the decoded pixels identical.
SPEED_ONLY = {"extract_features.decode_threads"}
PACKAGE_DOCSTRINGS = {"captioner/__init__.py", "stages/__init__.py"}
# Deps a stage reads only for some params: the folder of files the pretrained params may name.
READ_FOR_SOME_PARAMS = {"pretrained": {str(paths.PRETRAINED_SOURCES)}}


def module_file(module: str) -> Path:
    path = ROOT / Path(*module.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def local_imports(path: Path) -> set[str]:
    """Project modules (captioner.*, stages.*) that a file imports, including package __init__s."""
    modules = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        for name in names:
            if name.split(".")[0] in ("captioner", "stages") and module_file(name).exists():
                parts = name.split(".")
                modules.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return modules


def code_closure(script_module: str) -> set[str]:
    """Every project file that running `python -m script_module` imports."""
    seen: set[str] = set()
    pending = {script_module}
    while pending:
        module = pending.pop()
        if module in seen:
            continue
        seen.add(module)
        pending |= local_imports(module_file(module))
    return {str(module_file(module).relative_to(ROOT)) for module in seen}


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


def section_keys(section: str) -> set[str]:
    return {f"{section}.{field.name}" for field in dataclasses.fields(params.SECTIONS[section])}


def params_read(script: Path) -> set[str]:
    """The params keys a stage script reads: for each `NAME = params.load(params.SectionClass)`,
    `section.key` for every `NAME.key`, and the whole section where NAME itself is passed on."""
    tree = ast.parse(script.read_text())
    sections = {cls.__name__: section for section, cls in params.SECTIONS.items()}
    loaded = {node.targets[0].id: sections[node.value.args[0].attr] for node in ast.walk(tree)
              if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call)
              and ast.unparse(node.value.func) == "params.load"}
    keys, read_by_key = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                and node.value.id in loaded:
            keys.add(f"{loaded[node.value.id]}.{node.attr}")
            read_by_key.add(node.value)
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and node.id in loaded \
                and node not in read_by_key:
            keys |= section_keys(loaded[node.id])
    return keys


@pytest.mark.parametrize("name", list(STAGES))
def test_stage_params_are_the_keys_it_reads(name):
    script = ROOT / (STAGES[name]["cmd"].removeprefix("python -m ").replace(".", "/") + ".py")
    assert set(declared_params(STAGES[name])) == params_read(script) - SPEED_ONLY


def declared_params(stage: dict) -> list[str]:
    """A stage's params keys, a whole section (`train`) standing for all of its keys."""
    return [key for entry in stage["params"]
            for key in (sorted(section_keys(entry)) if entry in params.SECTIONS else [entry])]


def test_every_param_belongs_to_one_stage():
    declared = [key for stage in STAGES.values() for key in declared_params(stage)]
    assert sorted(declared) == sorted(set().union(*map(section_keys, params.SECTIONS)) - SPEED_ONLY)


def test_params_yaml_parses_into_every_section():
    document = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert set(document) == set(params.SECTIONS)
    for name, section_class in params.SECTIONS.items():
        params.parse(section_class, name, document[name])


def declared_paths(stage: dict) -> tuple[set[str], set[str]]:
    """A stage's data deps (code left out) and every path it declares as an out, metric or plot."""
    deps = {dep for dep in stage["deps"] if not dep.startswith(("stages/", "captioner/"))}
    outs = set()
    for kind in ("outs", "metrics", "plots"):
        for entry in stage.get(kind, []):
            outs.add(entry if isinstance(entry, str) else next(iter(entry)))
    return deps, outs


def touched_paths(project: Path, stage_name: str, events_file: Path,
                  extra_env: dict[str, str] | None = None) -> tuple[set[str], set[str]]:
    """The project files a stage reads and writes when run, as project-relative paths.

    Temporaries of atomic writes (`.NAME.tmp-*/NAME`) count as NAME; code, params.yaml and the
    scratch folders that outlive a run (training checkpoints, partial downloads, what the
    pretrained stage remembers of its sources) are left out.
    """
    run([sys.executable, str(ROOT / "tests/scripts/audit_stage.py"), f"stages.{stage_name}",
         str(events_file)], project, extra_env=extra_env)
    reads, writes = set(), set()
    for kind, path in json.loads(events_file.read_text()):
        resolved = Path(path)
        if not resolved.is_relative_to(project):
            continue
        relative = ATOMIC_TEMPORARY.sub(r"\1", resolved.relative_to(project).as_posix())
        if relative.split("/")[0] in ("captioner", "stages", ".dvc", ".git", ".", "params.yaml",
                                      ".gitignore", ".dvcignore") \
                or covered(relative, {str(paths.TRAIN_RUN), str(paths.DOWNLOAD_PARTIAL),
                                      str(paths.PRETRAINED_SCRATCH)}):
            continue
        (writes if kind == "write" else reads).add(relative)
    return reads, writes


def covered(path: str, declared: set[str]) -> bool:
    return any(path == entry or path.startswith(entry + "/") for entry in declared)


def assert_reads_and_writes_as_declared(project: Path, name: str, events_file: Path,
                                        extra_env: dict[str, str] | None = None) -> None:
    deps, outs = declared_paths(STAGES[name])
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
