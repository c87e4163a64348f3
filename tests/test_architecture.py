"""The package's layout by pipeline step: imports run one way, from the stages down to `core`."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Each subpackage of captioner/ may import only from the subpackages on floors below its own.
# The train and evaluate stages' work (training, reporting) and the model's use after training
# (inference) share a floor, so none of them depends on another's code; publishing the model
# (its card) uses inference's captioner, above it.
FLOORS = {"core": 0, "acquire": 1, "captions": 1, "inputs": 1, "model": 1, "training": 2,
          "reporting": 2, "inference": 2, "publishing": 3}


def imported_subpackages(path: Path) -> set[str]:
    """The captioner subpackages a file imports from."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                 else [node.module] if isinstance(node, ast.ImportFrom) and node.module else [])
        found |= {name.split(".")[1] for name in names
                  if name.startswith("captioner.") and name.count(".") >= 1}
    return found


def test_every_subpackage_has_a_floor():
    assert {path.parent.name for path in (ROOT / "captioner").glob("*/__init__.py")} == set(FLOORS)


def test_imports_run_down_the_floors_never_up_or_across():
    wrong = []
    for package, floor in FLOORS.items():
        for path in sorted((ROOT / "captioner" / package).rglob("*.py")):
            for target in imported_subpackages(path) - {package}:
                if FLOORS[target] >= floor:
                    wrong.append(f"{path.relative_to(ROOT)} imports captioner.{target}")
    assert wrong == []


def test_the_floor_check_sees_an_upward_import(tmp_path):
    module = tmp_path / "module.py"
    module.write_text("from captioner.reporting.report import render_report\nimport captioner.core.text\n")
    assert imported_subpackages(module) == {"reporting", "core"}
