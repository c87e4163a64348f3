"""Hostile caption files: each ends in one `error:` line naming the file, exit 1, within a memory
and time bound (tokenized in a subprocess under `resource` limits, as the tokenize stage does)."""

from __future__ import annotations

from pathlib import Path

from tests.helpers.bounded import one_error, run_bounded

# The tokenize stage's library call on folder/images and folder/text, format as the argument.
TOKENIZE = """
import dataclasses, sys
from pathlib import Path
from captioner.captions.tokenize import tokenize_collection
from captioner.core import params
from captioner.core.errors import run_stage
folder = Path(sys.argv[1])
config = dataclasses.replace(params.load(params.TokenizeParams, Path("params.yaml")), format=sys.argv[2])
(folder / "captions").mkdir()
run_stage(lambda: tokenize_collection(config, folder / "images", folder / "text", folder / "captions"))
"""


def tokenize_error(folder: Path, format_name: str) -> str:
    (folder / "images").mkdir()
    (folder / "images/a.jpg").write_bytes(b"")
    return one_error(run_bounded(["-c", TOKENIZE, str(folder), format_name]))


def test_a_karpathy_file_nested_twenty_thousand_deep_is_refused_at_depth_64(tmp_path):
    path = tmp_path / "text/dataset_coco.json"
    path.parent.mkdir()
    depth = 20_000
    path.write_text('{"images": [{"filename": "a.jpg", "sentences": ' + "[" * depth + "]" * depth
                    + "}]}")
    assert tokenize_error(tmp_path, "karpathy") == f"error: {path}: JSON nested over 64 levels deep"


def test_a_csv_header_over_the_csv_field_limit_is_one_line(tmp_path):
    path = tmp_path / "text/captions.csv"
    path.parent.mkdir()
    path.write_text("image," + "c" * 200_000 + "\na.jpg,a dog\n")
    assert tokenize_error(tmp_path, "csv") == \
        f"error: {path}: line 1: field larger than field limit (131072)"
