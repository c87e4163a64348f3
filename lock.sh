#!/usr/bin/env bash
# Compiles the locks from pyproject.toml's dependencies: every package pinned, with hashes, for
# Python 3.11 on Linux. Run it after changing a dependency there, and commit the four files.
#   ./lock.sh            (uv: `pip install uv==0.13.9`, or the dev lock, which has it)
set -euo pipefail
cd "$(dirname "$0")"
compile() {
    uv pip compile pyproject.toml --quiet --generate-hashes --python-version 3.11 \
        --python-platform x86_64-manylinux_2_28 --annotation-style line "$@"
}
compile --extra cpu -o requirements.txt
compile --extra cpu --extra dev -o requirements-dev.txt
compile --extra gpu -o requirements-gpu.txt
compile --extra gpu --extra dev -o requirements-dev-gpu.txt
