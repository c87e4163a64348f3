"""A stage in miniature for the fault harness's own test: copies `input.txt` to `out/result.txt`,
atomically when the input's first line is `atomic`, else in place (the bug the harness must see).

    python -m tests.scripts.one_output
"""

from __future__ import annotations

from pathlib import Path

from captioner.core.files import atomic_path


def main() -> None:
    text = Path("input.txt").read_text(encoding="utf-8")
    output = Path("out/result.txt")
    if text.startswith("atomic\n"):
        with atomic_path(output) as temporary:
            temporary.write_text(text, encoding="utf-8")
    else:
        output.parent.mkdir(exist_ok=True)
        output.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
