"""Runs a module like `python -m MODULE`, SIGKILLing itself just before its N-th rename of an output.

    python -m tests.helpers.sigkill N OUTPUT[:OUTPUT...] MODULE

A rename counts when its source or destination is one of the OUTPUT paths or lies inside one.
Fault tests use this to stop a stage at exact moments: with its outputs finished in their
temporary places but none moved, and between the renames that move them into place. With N = 0,
or N past the last rename, the module runs to the end.
"""

from __future__ import annotations

import itertools
import os
import runpy
import signal
import sys
from collections.abc import Callable


def touches(path: os.PathLike | str, outputs: list[str]) -> bool:
    """Whether `path` is one of `outputs` (absolute paths) or lies inside one."""
    path = os.path.abspath(path)
    return any(path == output or path.startswith(output + os.sep) for output in outputs)


def killing_before(rename: Callable, target: int, outputs: list[str],
                   counter: itertools.count) -> Callable:
    """Wraps os.rename/os.replace: the `target`-th call that touches an output kills the process."""

    def wrapper(source: os.PathLike | str, destination: os.PathLike | str, *args: object,
                **kwargs: object) -> None:
        if (touches(source, outputs) or touches(destination, outputs)) and next(counter) == target:
            os.kill(os.getpid(), signal.SIGKILL)
        rename(source, destination, *args, **kwargs)

    return wrapper


def main() -> None:
    target, outputs, module = int(sys.argv[1]), sys.argv[2].split(os.pathsep), sys.argv[3]
    outputs = [os.path.abspath(output) for output in outputs]
    counter = itertools.count(1)
    os.rename = killing_before(os.rename, target, outputs, counter)
    os.replace = killing_before(os.replace, target, outputs, counter)
    sys.argv = [module]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
