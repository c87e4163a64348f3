"""What a stage's code imports, which params its script reads, which project files it touches when run."""

from __future__ import annotations

import ast
import dataclasses
import json
import re
import sys
from pathlib import Path

from captioner.core import params, paths
from tests.helpers.project import ROOT, run

# An atomic write's temporary: `.NAME.tmp-*` (a file, or a folder holding NAME), counted as NAME.
ATOMIC_TEMPORARY = re.compile(r"\.([^/]+)\.tmp-[^/]+(?:/\1)?")
# Never a stage's data: code, params.yaml and the version control and DVC files.
NOT_DATA = ("captioner", "stages", ".dvc", ".git", ".", "params.yaml", ".gitignore", ".dvcignore")
# Scratch folders that outlive a run on purpose: training checkpoints, partial downloads, what the
# pretrained stage remembers of its sources.
SCRATCH = {str(paths.TRAIN_RUN), str(paths.DOWNLOAD_PARTIAL), str(paths.PRETRAINED_SCRATCH)}


def _module_file(module: str) -> Path:
    path = ROOT / Path(*module.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def _local_imports(path: Path) -> set[str]:
    """Project modules (captioner.*, stages.*) that a file imports, including package __init__s."""
    modules = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        for name in names:
            if name.split(".")[0] in ("captioner", "stages") and _module_file(name).exists():
                parts = name.split(".")
                modules.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return modules


def code_closure(script_module: str) -> set[str]:
    """Every project file that running `python -m script_module` imports, relative to the root."""
    seen: set[str] = set()
    pending = {script_module}
    while pending:
        module = pending.pop()
        if module in seen:
            continue
        seen.add(module)
        pending |= _local_imports(_module_file(module))
    return {str(_module_file(module).relative_to(ROOT)) for module in seen}


def section_keys(section: str) -> set[str]:
    """Every `section.key` of a params.yaml section."""
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


def covered(path: str, declared: set[str]) -> bool:
    """Whether `path` is one of the `declared` paths or lies in one of them."""
    return any(path == entry or path.startswith(entry + "/") for entry in declared)


def touched_paths(project: Path, stage_name: str, events_file: Path,
                  extra_env: dict[str, str] | None = None) -> tuple[set[str], set[str]]:
    """The project files a stage reads and writes when run under tests/scripts/audit_stage.py, as
    project-relative paths: an atomic write's temporary counts as its file; what is NOT_DATA, and
    the SCRATCH folders, are left out."""
    run([sys.executable, str(ROOT / "tests/scripts/audit_stage.py"), f"stages.{stage_name}",
         str(events_file)], project, extra_env=extra_env)
    reads, writes = set(), set()
    for kind, path in json.loads(events_file.read_text()):
        resolved = Path(path)
        if not resolved.is_relative_to(project):
            continue
        relative = ATOMIC_TEMPORARY.sub(r"\1", resolved.relative_to(project).as_posix())
        if relative.split("/")[0] in NOT_DATA or covered(relative, SCRATCH):
            continue
        (writes if kind == "write" else reads).add(relative)
    return reads, writes
