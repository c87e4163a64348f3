"""Shared fixtures: the sample mirror served over local HTTP, and one project built on it per session."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.http_server import ServedDirectory, serve_directory
from tests.project import FAST_PARAMS, SAMPLE, commit_all, copy_project, dvc


@dataclass
class BuiltProject:
    """A project copy on which `dvc repro embed` then `dvc repro` ran, committed as the baseline."""

    path: Path
    embed_output: str
    repro_output: str

    def clone(self, destination: Path) -> Path:
        """An independent copy (git history and DVC cache included) that a test may change."""
        shutil.copytree(self.path, destination, symlinks=True)
        return destination


@pytest.fixture(scope="session")
def sample_server() -> ServedDirectory:
    if not SAMPLE.exists():
        pytest.skip(f"the sample mirror is not at {SAMPLE}")
    with serve_directory(SAMPLE) as server:
        yield server


@pytest.fixture(scope="session")
def built_project(tmp_path_factory, sample_server) -> BuiltProject:
    path = copy_project(tmp_path_factory.mktemp("project"), {
        **FAST_PARAMS,
        "download": {"images_url": sample_server.url_for("Flickr8k_Dataset.zip"),
                     "text_url": sample_server.url_for("Flickr8k_text.zip")},
    })
    embed_output = dvc("repro", "embed", cwd=path).stdout
    repro_output = dvc("repro", cwd=path).stdout
    commit_all(path, "pipeline run on the sample mirror")
    return BuiltProject(path, embed_output, repro_output)
