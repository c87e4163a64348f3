"""Scripts the tests run as subprocesses: `python -m tests.scripts.NAME`."""
