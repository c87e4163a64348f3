"""dvc.yaml declares, for every stage, exactly the code it runs and the params it reads."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest
import yaml

from captioner import params

ROOT = Path(__file__).resolve().parents[1]
STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
# Knobs that change how fast a stage runs but not what it writes: declaring them would rerun the
# stage (and everything after it) for nothing. tests/test_features.py proves the decoded pixels identical.
SPEED_ONLY = {"extract_features.decode_threads"}


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
    pending = {script_module, "stages"}
    while pending:
        module = pending.pop()
        if module in seen:
            continue
        seen.add(module)
        pending |= local_imports(module_file(module))
    return {str(module_file(module).relative_to(ROOT)) for module in seen}


@pytest.mark.parametrize("name", list(STAGES))
def test_stage_code_deps_are_exactly_what_it_imports(name):
    stage = STAGES[name]
    script_module = stage["cmd"].removeprefix("python -m ")
    declared = {dep for dep in stage["deps"] if dep.endswith(".py")}
    assert declared == code_closure(script_module)


@pytest.mark.parametrize("name", list(STAGES))
def test_stage_params_are_its_section(name):
    fields = {f"{name}.{field.name}" for field in dataclasses.fields(params.SECTIONS[name])}
    assert set(STAGES[name]["params"]) == fields - SPEED_ONLY


def test_params_yaml_parses_into_every_section():
    document = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert set(document) == set(params.SECTIONS)
    for name, section_class in params.SECTIONS.items():
        params.parse(section_class, name, document[name])
