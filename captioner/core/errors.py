"""The one error type the pipeline raises for bad input, and the wrapper that reports it in a line."""

from __future__ import annotations

import sys
from collections.abc import Callable


class PipelineError(Exception):
    """A problem with input data, params or the environment, stated in one line for the user (a
    line per problem where several are found at once, as in params.yaml)."""


def run_stage(main: Callable[[], None]) -> None:
    """Runs a stage's main function; a PipelineError becomes `error: ` lines on stderr and exit
    code 1."""
    try:
        main()
    except PipelineError as error:
        for line in str(error).splitlines():
            print(f"error: {line}", file=sys.stderr)
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        raise SystemExit(130) from None
