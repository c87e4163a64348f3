"""captioner: the shared library behind the DVC stages of the caption pipeline.

Importing it first (every stage does, through the `stages` package) keeps TensorFlow's start-up
notices off the terminal.
"""

from captioner import quiet_start

quiet_start.install()
