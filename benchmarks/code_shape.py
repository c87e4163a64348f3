"""How the code reads, in figures anyone can rerun: functions and their lengths and parameter
counts (from Python's ast), module-level helpers in test files (neither tests nor fixtures), and
the commit subjects' lengths.

Prints one line per figure and, as its last line, the figures as one JSON object.

    python benchmarks/code_shape.py [--long 40] [--many 5]
"""

from __future__ import annotations

import argparse
import ast
import json
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("captioner", "stages", "benchmarks", "tests")


def functions(path: Path) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    """Every function and method defined in a Python file, nested ones included."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [node for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)]


def parameter_count(function: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Parameters a caller can pass: positional, keyword-only and * / ** ones, without self/cls."""
    arguments = function.args
    named = [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs]
    if named and named[0].arg in ("self", "cls"):
        named = named[1:]
    return len(named) + (arguments.vararg is not None) + (arguments.kwarg is not None)


def is_fixture(function: ast.FunctionDef) -> bool:
    """Whether a function is decorated as a pytest fixture."""
    return any("fixture" in ast.unparse(decorator) for decorator in function.decorator_list)


def subject_lengths() -> list[int]:
    """The length of every commit subject on the current branch."""
    subjects = subprocess.run(["git", "log", "--format=%s"], cwd=ROOT, capture_output=True,
                              text=True, check=True).stdout.splitlines()
    return [len(subject) for subject in subjects]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--long", type=int, default=40, help="lines that make a function long")
    parser.add_argument("--many", type=int, default=5, help="parameters that make too many")
    arguments = parser.parse_args()
    package = [function for folder in ("captioner", "stages")
               for path in sorted((ROOT / folder).rglob("*.py")) for function in functions(path)]
    everywhere = [(path, function) for folder in SOURCES
                  for path in sorted((ROOT / folder).rglob("*.py")) for function in functions(path)]
    test_files = [function for path in sorted((ROOT / "tests").glob("test_*.py"))
                  for function in ast.parse(path.read_text(encoding="utf-8")).body
                  if isinstance(function, ast.FunctionDef) and not is_fixture(function)]
    lengths = subject_lengths()
    figures = {
        "package_functions": len(package),
        f"package_functions_over_{arguments.long}_lines": sum(
            function.end_lineno - function.lineno + 1 > arguments.long for function in package),
        f"package_functions_over_{arguments.many}_parameters": sum(
            parameter_count(function) > arguments.many for function in package),
        f"all_functions_over_{arguments.long}_lines": sum(
            function.end_lineno - function.lineno + 1 > arguments.long
            for _, function in everywhere),
        "test_file_helpers": sum(
            not function.name.startswith("test_") for function in test_files),
        "commit_subjects": len(lengths),
        "commit_subject_mean_chars": round(sum(lengths) / max(len(lengths), 1), 1),
        "commit_subjects_over_72_chars": sum(length > 72 for length in lengths),
    }
    for name, value in figures.items():
        print(f"{name}: {value}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
