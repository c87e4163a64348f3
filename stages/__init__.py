"""The pipeline's stage scripts, one per DVC stage, each run as `python -m stages.<name>`.

Importing `captioner` here, before any stage imports TensorFlow, keeps its start-up notices quiet.
"""

import captioner  # noqa: F401
