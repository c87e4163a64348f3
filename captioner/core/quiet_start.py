"""Keeps TensorFlow's notices off the terminal; real warnings and errors still show.

TensorFlow's C++ side prints INFO notices (oneDNN, CPU instructions) while it is imported, before
its logging honours TF_CPP_MIN_LOG_LEVEL, straight to file descriptor 2. So the import runs with
that descriptor captured, and the captured lines are replayed without those notices;
`notices_dropped` does the same around any other block that prints them.

Its Python side warns when a graph function is traced often, counting the traces of every function
made from the same Python code. Decoding (captioner/model/decoding.py) makes graph functions per
model, and evaluate decodes with every epoch's model, so each trace there is a new model's first
and the warning a false alarm; it is dropped for those functions alone.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import importlib.util
import logging
import os
import re
import sys
import tempfile
import types
from collections.abc import Iterator

NOTICE = re.compile(rb"^(WARNING: All log messages before absl::InitializeLog\(\) is called|"
                    rb"I\d{4} [\d:.]+ +\d+ [\w.]+:\d+\] |"
                    # Logged as an error, but says only that a boolean op runs without oneDNN.
                    rb"E\d{4} [\d:.]+ +\d+ util\.cc:\d+\] oneDNN supports DT_BOOL only on platforms )")
# The frequent-tracing warning about a function of captioner/model/decoding.py.
DECODING_RETRACED = re.compile(r"calls to <function (Decoder\.__init__|compiled)\.<locals>\.\w+ at "
                               r"0x[0-9a-f]+> triggered tf\.function retracing")


@contextlib.contextmanager
def notices_dropped() -> Iterator[None]:
    """Runs the block with file descriptor 2 captured, then writes out all but the notices."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = b"".join(line for line in captured if not NOTICE.match(line))
            sys.stderr.buffer.write(kept)
            sys.stderr.flush()


class _QuietLoader(importlib.abc.Loader):
    def __init__(self, loader: importlib.abc.Loader) -> None:
        self._loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: types.ModuleType) -> None:
        with notices_dropped():
            self._loader.exec_module(module)


class _QuietTensorFlowFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, name: str, path: object = None,
                  target: types.ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


def _not_decoding_retraced(record: logging.LogRecord) -> bool:
    return not DECODING_RETRACED.search(record.getMessage())


def install() -> None:
    """Makes the first import of TensorFlow in this process a quiet one, and its decoding's
    frequent-tracing warnings silent."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    logging.getLogger("tensorflow").addFilter(_not_decoding_retraced)  # once: addFilter skips a repeat
    if "tensorflow" not in sys.modules:
        sys.meta_path.insert(0, _QuietTensorFlowFinder())
