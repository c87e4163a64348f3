"""Hostile sources for the download stage: crafted archives, folders and servers each end in one
`error:` line naming the source, exit 1, within a memory and time bound (the stage runs in a
subprocess under `resource` limits), and leave no raw folder behind."""

from __future__ import annotations

import bz2
import io
import os
import tarfile
import zipfile
from pathlib import Path

import pytest

from tests.helpers.archives import make_tar, make_zip, patched_zip, tar_header
from tests.helpers.bounded import MB, one_error, run_bounded
from tests.helpers.http_server import serve_endless_body
from tests.helpers.project import params_only_project

TOKENS = b"1.jpg#0\ta dog .\n"


def download_project(tmp_path: Path, images: Path | str, max_unpacked_mb: int = 100) -> Path:
    """A project of params.yaml alone whose download stage reads `images` and a small text.zip."""
    text = make_zip(tmp_path / "text.zip", {"Flickr8k.token.txt": TOKENS})
    return params_only_project(tmp_path / "project", {"download": {
        "images_url": str(images), "text_url": str(text), "max_unpacked_mb": max_unpacked_mb}})


def stage_error(folder: Path) -> str:
    """Runs the download stage within the bounds; its one error line. It leaves no raw images."""
    line = one_error(run_bounded(["-m", "stages.download"], cwd=folder))
    assert not (folder / "data/raw/images").exists()
    return line


def test_a_link_in_a_folder_source_is_refused(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(b"a")
    (folder / "x.jpg").symlink_to("/etc/passwd")
    assert stage_error(download_project(tmp_path, folder)) == \
        f"error: {folder}: x.jpg is a symbolic link; a folder source must hold its images itself"


def test_a_server_that_never_stops_sending_is_cut_at_the_cap(tmp_path):
    with serve_endless_body() as server_url:
        url = f"{server_url}/images.zip"
        line = stage_error(download_project(tmp_path, url, max_unpacked_mb=1))
    assert line == f"error: {url}: more than 1.0 MB, the cap set by download.max_unpacked_mb"


def test_a_tar_member_of_negative_size_is_refused_not_looped_on(tmp_path):
    archive = tmp_path / "images.tar"
    first = tar_header("a.jpg", 3) + b"abc".ljust(512, b"\0")
    archive.write_bytes(first + tar_header("b.jpg", -1024) + bytes(1024))
    assert stage_error(download_project(tmp_path, archive)) == (
        f"error: {archive}: truncated or damaged tar archive: member 'b.jpg' declares a negative size")


def test_a_gigabyte_long_name_header_is_refused_before_it_is_read(tmp_path):
    archive = tmp_path / "images.tar.bz2"
    archive.write_bytes(bz2.compress(tar_header("././@LongLink", 1 << 30, tarfile.GNUTYPE_LONGNAME)
                                     + bytes(4096)))
    assert stage_error(download_project(tmp_path, archive)) == (
        f"error: {archive}: truncated or damaged tar archive: an extended header of 1073741824 "
        "bytes (a name or record over 65536)")


def test_the_members_of_a_tar_are_listed_only_up_to_the_cap(tmp_path):
    archive = make_tar(tmp_path / "images.tar.gz", {"notes.txt": bytes(3 * MB), "a.jpg": b"a"},
                       "w:gz")
    assert stage_error(download_project(tmp_path, archive, max_unpacked_mb=1)) == (
        f"error: {archive}: its members declare more than 1.0 MB, over download.max_unpacked_mb")


@pytest.mark.parametrize(("offset", "value", "problem"), [
    (8, b"\x01\x00", "member 'a.jpg' is encrypted"),
    (10, b"\x63\x00", "member 'a.jpg' uses compression method 99, which Python's zipfile cannot read"),
], ids=["encrypted", "unknown_method"])
def test_a_zip_member_zipfile_cannot_read_is_refused(tmp_path, offset, value, problem):
    archive = patched_zip(tmp_path / "images.zip", {"a.jpg": b"a" * 100}, offset, value)
    assert stage_error(download_project(tmp_path, archive)) == f"error: {archive}: {problem}"


@pytest.mark.parametrize("method", [zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA],
                         ids=["deflate", "bzip2", "lzma"])
def test_a_corrupt_compressed_zip_member_is_named(tmp_path, method):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as archive:
        archive.writestr("a.jpg", os.urandom(20_000) + bytes(20_000))
    data = bytearray(buffer.getvalue())
    start = data.index(b"a.jpg") + len("a.jpg") + 40  # into the compressed data
    data[start:start + 64] = bytes(range(64))
    path = tmp_path / "images.zip"
    path.write_bytes(bytes(data))
    line = stage_error(download_project(tmp_path, path))
    assert line.startswith(f"error: {path}: damaged member 'a.jpg': ")


def test_a_member_name_over_255_bytes_is_refused(tmp_path):
    name = "a" * 300 + ".jpg"
    archive = make_zip(tmp_path / "images.zip", {name: b"a"})
    assert stage_error(download_project(tmp_path, archive)) == \
        f"error: {archive}: member '{name[:80]}...' has a name over 255 bytes"


def test_a_member_that_is_both_a_file_and_a_folder_is_refused(tmp_path):
    archive = make_zip(tmp_path / "images.zip", {"a.jpg": b"a", "a.jpg/b.jpg": b"b"})
    assert stage_error(download_project(tmp_path, archive)) == \
        f"error: {archive}: member 'a.jpg' is a file, and a folder of other members"



def test_a_tar_member_name_that_is_not_utf8_is_refused(tmp_path):
    archive = make_tar(tmp_path / "images.tar", {os.fsdecode(b"a\xff.jpg"): b"a"})
    assert stage_error(download_project(tmp_path, archive)) == \
        f"error: {archive}: member 'a\\xff.jpg' has a name that is not UTF-8"
