"""Shared fixtures: a drawn Flickr8k-layout collection served over local HTTP, and one project
built on it per session (the pipeline's end-to-end fixture; it needs nothing outside the repo); a
file of random bytes for the download tests to serve."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers.datasets import Flickr8kArchives, write_flickr8k
from tests.helpers.http_server import ServedDirectory, serve_directory
from tests.helpers.project import FAST_PARAMS, commit_all, copy_project, dvc

# Opt-in markers and the option that runs their tests.
OPT_IN = {"long": "--run-long", "full_data": "--run-full-data"}
# One undecodable image in each split: the pipeline must leave them out and finish.
CORRUPT = ("pic_005.jpg", "pic_042.jpg", "pic_055.jpg")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-long", action="store_true",
                     help="also run the tests marked long (minutes-long fault and reproducibility runs)")
    parser.addoption("--run-full-data", action="store_true",
                     help="also run the tests marked full_data (the full ../shared/flickr8k mirror)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skips opt-in tests unless their option is given; a test on the built project that is not
    marked slow is a mistake in the suite, and stops it."""
    for item in items:
        if "built_project" in item.fixturenames and "slow" not in item.keywords:
            raise pytest.UsageError(f"{item.nodeid} runs DVC on the built project: mark it slow")
        for marker, option in OPT_IN.items():
            if marker in item.keywords and not config.getoption(option):
                item.add_marker(pytest.mark.skip(reason=f"opt-in: run with {option}"))


@dataclass
class BuiltProject:
    """A project copy on which `dvc repro embed` then `dvc repro` ran, committed as the baseline."""

    path: Path
    collection: Flickr8kArchives
    embed_output: str
    repro_output: str

    def clone(self, destination: Path) -> Path:
        """An independent copy (git history and DVC cache included) that a test may change."""
        shutil.copytree(self.path, destination, symlinks=True)
        return destination


@pytest.fixture
def payload(tmp_path) -> Path:
    """A 300 kB file of random bytes, alone in its folder, to serve."""
    served = tmp_path / "served"
    served.mkdir()
    path = served / "Flickr8k_Dataset.zip"
    path.write_bytes(os.urandom(300_000))
    return path


@pytest.fixture(scope="session")
def collection(tmp_path_factory) -> Flickr8kArchives:
    return write_flickr8k(tmp_path_factory.mktemp("collection"), corrupt=CORRUPT)


@pytest.fixture(scope="session")
def collection_server(collection) -> ServedDirectory:
    with serve_directory(collection.images_zip.parent) as server:
        yield server


@pytest.fixture(scope="session")
def built_project(tmp_path_factory, collection, collection_server) -> BuiltProject:
    path = copy_project(tmp_path_factory.mktemp("project"), {
        **FAST_PARAMS,
        "download": {"images_url": collection_server.url_for(collection.images_zip.name),
                     "text_url": collection_server.url_for(collection.text_zip.name)},
    })
    embed_output = dvc("repro", "embed", cwd=path).stdout
    repro = dvc("repro", cwd=path)
    commit_all(path, "pipeline run on the drawn collection")
    return BuiltProject(path, collection, embed_output, repro.stdout + repro.stderr)
