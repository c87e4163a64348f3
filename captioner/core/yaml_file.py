"""Reads params.yaml as YAML within bounds: yaml.safe_load, less aliases and deep nesting.

PyYAML has no limit of its own: nested aliases expand exponentially (a 2.6 KB file takes 1 GB), and
its composer recurses once per level of nesting. params.yaml needs neither.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from captioner.core.errors import PipelineError

# params.yaml nests two levels (section, key); deeper than this is no params file.
MAX_DEPTH = 32


class _BoundedLoader(yaml.SafeLoader):
    """yaml.SafeLoader refusing aliases and nesting over MAX_DEPTH."""

    depth = 0

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            raise yaml.composer.ComposerError(None, None, "aliases (*name) are not allowed",
                                              self.peek_event().start_mark)
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                raise yaml.composer.ComposerError(None, None, f"nested over {MAX_DEPTH} levels",
                                                  self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def read_yaml(path: Path) -> dict[str, Any]:
    """The mapping a YAML file holds (empty for an empty file); one line for any problem."""
    try:
        document = yaml.load(path.read_text(encoding="utf-8"), Loader=_BoundedLoader) or {}
    except UnicodeDecodeError as error:
        raise PipelineError(f"{path}: not UTF-8 text (byte {error.start})") from None
    except OSError as error:
        raise PipelineError(f"{path}: cannot read params: {error.strerror}") from None
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise PipelineError(f"{path}: not valid YAML: {error.problem or error.context}{where}") from None
    except yaml.YAMLError as error:
        raise PipelineError(f"{path}: not valid YAML: {' '.join(str(error).split())}") from None
    if not isinstance(document, dict):
        raise PipelineError(f"{path}: not a mapping of sections")
    return document
