"""TensorFlow's notices and false alarms kept off the terminal; real warnings and errors kept."""

from __future__ import annotations

import sys

from tests.helpers.project import ROOT, run

WRITES_TO_STDERR = """
import os
from captioner.core.quiet_start import notices_dropped
with notices_dropped():
    os.write(2, b"I0000 00:00:1796.5   12 port.cc:153] oneDNN custom operations are on.\\n")
    os.write(2, b"E0000 00:00:1796.5   12 util.cc:131] oneDNN supports DT_BOOL only on platforms "
                b"with AVX-512. Falling back to the default Eigen-based implementation if present.\\n")
    os.write(2, b"E0000 00:00:1796.5   12 util.cc:131] a real error\\n")
"""


def test_a_block_drops_tensorflows_notices_and_keeps_its_errors():
    result = run([sys.executable, "-c", WRITES_TO_STDERR], ROOT)
    assert result.stderr == "E0000 00:00:1796.5   12 util.cc:131] a real error\n"


def test_decoding_with_every_epochs_model_warns_of_no_retracing_but_other_functions_still_do():
    result = run([sys.executable, "-m", "tests.scripts.decode_many_models"], ROOT)
    assert [line for line in result.stderr.splitlines() if "retracing" in line] != []
    assert "retraced_elsewhere" in result.stderr and "Decoder" not in result.stderr
    assert "compiled" not in result.stderr
