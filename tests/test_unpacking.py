"""Tests for safe archive extraction: zip and tar members, image paths, text files, size caps."""

from __future__ import annotations

import os
import stat
import zipfile
from pathlib import Path

import pytest

from captioner.acquire.fetching import Fetched
from captioner.acquire.unpacking import is_archive, unpack_images, unpack_text
from captioner.core.errors import PipelineError
from tests.helpers.archives import files_under, make_tar, make_unsafe_tar, make_zip


def fetched(path: Path) -> Fetched:
    return Fetched(str(path), path, path.stat().st_size, "")


# --- zip -------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("member", "problem"),
    [("../evil.jpg", "escapes the archive"), ("top/../../evil.jpg", "escapes the archive"),
     # Windows tools write `\` between the parts of a zip member's name.
     ("..\\..\\evil.jpg", "escapes the archive"), ("top\\..\\..\\evil.jpg", "escapes the archive"),
     ("/etc/evil.jpg", "absolute path"), ("C:/evil.jpg", "absolute path")],
)
def test_unsafe_member_names_are_refused(tmp_path, member, problem):
    zipped = make_zip(tmp_path / "bad.zip", {"ok.jpg": b"x", member: b"y"})
    with pytest.raises(PipelineError, match=problem) as caught:
        unpack_images(fetched(zipped), tmp_path / "out", 10**6)
    assert str(zipped) in str(caught.value) and member in str(caught.value)
    assert not (tmp_path / "out").exists()


def test_symlink_member_is_refused(tmp_path):
    link = zipfile.ZipInfo("images/link.jpg")
    link.create_system = 3
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    zipped = tmp_path / "link.zip"
    with zipfile.ZipFile(zipped, "w") as archive:
        archive.writestr(link, "/etc/passwd")
    with pytest.raises(PipelineError, match="symbolic link"):
        unpack_images(fetched(zipped), tmp_path / "out", 10**6)


def test_zip_bomb_over_the_cap_is_refused_before_writing(tmp_path):
    zipped = make_zip(tmp_path / "bomb.zip", {"a.jpg": bytes(3 * 1024 * 1024)})
    assert zipped.stat().st_size < 10_000
    with pytest.raises(PipelineError, match="archive bomb"):
        unpack_images(fetched(zipped), tmp_path / "out", 1024 * 1024)
    assert not (tmp_path / "out").exists()


def test_member_larger_than_declared_is_refused(tmp_path):
    zipped = make_zip(tmp_path / "liar.zip", {"a.jpg": bytes(200_000)})
    content = bytearray(zipped.read_bytes())
    with zipfile.ZipFile(zipped) as archive:
        offset = archive.infolist()[0].header_offset
    for size_field in (offset + 22, content.rindex(b"PK\x01\x02") + 24):
        content[size_field:size_field + 4] = (1000).to_bytes(4, "little")
    zipped.write_bytes(bytes(content))
    with pytest.raises(PipelineError, match="damaged member 'a.jpg'"):
        unpack_images(fetched(zipped), tmp_path / "out", 10**6)
    assert (tmp_path / "out" / "a.jpg").stat().st_size <= 1000


def test_not_an_archive_and_truncated_zip_are_named(tmp_path):
    html = tmp_path / "page.zip"
    html.write_text("<html>rate limited</html>")
    whole = make_zip(tmp_path / "whole.zip", {f"{i}.jpg": os.urandom(2000) for i in range(5)})
    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(whole.read_bytes()[:5000])
    nameless = tmp_path / "download"
    nameless.write_text("<html>not found</html>")
    with pytest.raises(PipelineError, match=r"page\.zip: not a zip archive"):
        unpack_images(fetched(html), tmp_path / "out", 10**6)
    with pytest.raises(PipelineError, match=r"truncated\.zip: truncated or damaged zip"):
        unpack_images(fetched(truncated), tmp_path / "out", 10**6)
    with pytest.raises(PipelineError, match=r"download: not a zip or tar archive"):
        unpack_images(fetched(nameless), tmp_path / "out", 10**6)


def test_image_paths_lose_only_the_common_top_folder_and_junk_is_skipped(tmp_path):
    zipped = make_zip(tmp_path / "images.zip", {
        "Some_Top/": b"", "Some_Top/inner/a.jpg": b"a", "Some_Top/B.JPEG": b"b",
        "Some_Top/c.png": b"c", "Some_Top/notes.md": b"n", "Some_Top/.hidden.jpg": b"h",
        "Some_Top/.cache/d.jpg": b"d", "__MACOSX/Some_Top/inner/a.jpg": b"junk",
    })
    unpacked = unpack_images(fetched(zipped), tmp_path / "out", 10**6)
    assert unpacked.names == ["B.JPEG", "c.png", "inner/a.jpg"] and unpacked.unpacked_bytes == 3
    assert files_under(tmp_path / "out") == {"B.JPEG": b"b", "c.png": b"c", "inner/a.jpg": b"a"}


def test_two_text_members_with_one_base_name_are_refused(tmp_path):
    zipped = make_zip(tmp_path / "dup.zip", {"x/a.txt": b"1", "y/a.txt": b"2"})
    with pytest.raises(PipelineError, match="both unpack to 'a.txt'"):
        unpack_text(fetched(zipped), tmp_path / "out", 10**6)


def test_text_members_are_flattened_by_suffix(tmp_path):
    zipped = make_zip(tmp_path / "text.zip", {
        "t/Flickr8k.token.txt": b"1", "t/results_20130124.token": b"2", "t/annotations/c.json": b"3",
        "t/captions.CSV": b"4", "t/readme.md": b"5", "t/photo.jpg": b"6", "t/.notes.txt": b"7",
    })
    unpacked = unpack_text(fetched(zipped), tmp_path / "out", 10**6)
    assert files_under(tmp_path / "out") == {"Flickr8k.token.txt": b"1", "c.json": b"3",
                                             "captions.CSV": b"4", "results_20130124.token": b"2"}
    assert unpacked.unpacked_bytes == 4


# --- tar -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "mode"), [("images.tar", "w"), ("images.tar.gz", "w:gz"),
                                            ("images.tgz", "w:gz"), ("images.tar.xz", "w:xz")])
def test_tar_images_keep_paths_below_the_common_top_folder(tmp_path, name, mode):
    members = {"Flicker8k_Dataset/1.jpg": b"one", "Flicker8k_Dataset/sub/2.jpg": b"two",
               "Flicker8k_Dataset/readme.txt": b"not an image"}
    archive = make_tar(tmp_path / name, members, mode)
    assert is_archive(fetched(archive))
    unpacked = unpack_images(fetched(archive), tmp_path / "out", 10**6)
    assert unpacked.names == ["1.jpg", "sub/2.jpg"] and unpacked.unpacked_bytes == 6
    assert files_under(tmp_path / "out") == {"1.jpg": b"one", "sub/2.jpg": b"two"}


def test_tar_is_recognised_by_content_whatever_its_name(tmp_path):
    archive = make_tar(tmp_path / "download", {"a/x.jpg": b"x"}, "w:gz")
    assert is_archive(fetched(archive))
    assert unpack_images(fetched(archive), tmp_path / "out", 10**6).names == ["x.jpg"]


def test_coco_style_tar_keeps_both_split_folders(tmp_path):
    archive = make_tar(tmp_path / "coco.tar", {"./train2014/a.jpg": b"a", "./val2014/b.jpg": b"b"})
    unpacked = unpack_images(fetched(archive), tmp_path / "out", 10**6)
    assert unpacked.names == ["train2014/a.jpg", "val2014/b.jpg"]


# Each kind of unsafe tar member `make_unsafe_tar` writes, and how its refusal names the problem.
UNSAFE_MEMBER_PROBLEMS = {"absolute": "absolute path", "parent": "escapes the archive",
                          "symlink": "is a symbolic link", "hardlink": "is a hard link",
                          "device": "is a device or pipe", "fifo": "is a device or pipe"}


@pytest.mark.parametrize("kind", UNSAFE_MEMBER_PROBLEMS)
def test_unsafe_tar_members_are_refused_before_writing(tmp_path, kind):
    archive = make_unsafe_tar(tmp_path / "bad.tar", kind)
    with pytest.raises(PipelineError, match=UNSAFE_MEMBER_PROBLEMS[kind]) as caught:
        unpack_images(fetched(archive), tmp_path / "out", 10**6)
    assert str(archive) in str(caught.value)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("kind", "file_type"), [("char_device", stat.S_IFCHR),
                                                ("block_device", stat.S_IFBLK),
                                                ("fifo", stat.S_IFIFO), ("socket", stat.S_IFSOCK)])
def test_device_pipe_and_socket_zip_members_are_refused_before_writing(tmp_path, kind, file_type):
    archive = tmp_path / "bad.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        handle.writestr("top/ok.jpg", b"ok")
        special = zipfile.ZipInfo(f"top/{kind}.jpg")
        special.create_system = 3  # Unix, whose mode bits the high 16 bits of external_attr hold
        special.external_attr = (file_type | 0o644) << 16
        handle.writestr(special, b"")
    with pytest.raises(PipelineError) as caught:
        unpack_images(fetched(archive), tmp_path / "out", 10**6)
    assert str(caught.value) == f"{archive}: member 'top/{kind}.jpg' is a device, pipe or socket"
    assert not (tmp_path / "out").exists()


def test_tar_bomb_over_the_cap_is_refused_before_writing(tmp_path):
    archive = make_tar(tmp_path / "bomb.tgz", {"a.jpg": bytes(3 * 1024 * 1024)}, "w:gz")
    assert archive.stat().st_size < 10_000
    with pytest.raises(PipelineError, match="members declare more than 1.0 MB, over download.max_unpacked"):
        unpack_images(fetched(archive), tmp_path / "out", 1024 * 1024)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name", ["truncated.tgz", "download"])
@pytest.mark.parametrize("kept_bytes", [30, 50_000])
def test_truncated_tar_gz_is_named(tmp_path, name, kept_bytes):
    whole = make_tar(tmp_path / "whole.tgz", {f"{i}.jpg": os.urandom(20_000) for i in range(5)},
                     "w:gz")
    truncated = tmp_path / name
    truncated.write_bytes(whole.read_bytes()[:kept_bytes])
    with pytest.raises(PipelineError, match=f"{name}: truncated or damaged tar archive: Compressed"):
        unpack_images(fetched(truncated), tmp_path / "out", 10**6)
