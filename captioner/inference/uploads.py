"""An uploaded image, received within the service's caps and deadline, and its pixels.

The body is read through a counting stream, so an upload over the cap is refused at the cap
whatever its Content-Length says. A multipart form is parsed by Starlette from that stream; a raw
body goes the same way as a form's file part: into a file spooled in memory up to SPOOL_BYTES,
past that in a temporary file, so uploads being received or waiting for a decoder hold little
memory. The whole upload must arrive within the client deadline (408 otherwise).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator
from tempfile import SpooledTemporaryFile

import numpy as np
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect, Request

from captioner.inputs.pixels import BadImage, ImageTooLarge, load_pixels

# Room for a multipart form's boundaries and part headers around the image.
FORM_OVERHEAD = 64 * 1024
FILE_FIELD = "file"
# The most of an upload held in memory; the rest goes to a temporary file.
SPOOL_BYTES = 256 * 1024
# The largest text field of a form (held in memory; the page sends none).
MAX_FIELD_BYTES = 1024


class _FormParser(MultiPartParser):
    spool_max_size = SPOOL_BYTES


class UploadError(Exception):
    """A request the service refuses: the HTTP status and the problem."""

    def __init__(self, status: int, problem: str) -> None:
        super().__init__(problem)
        self.status, self.problem = status, problem


def _too_large(size: str, max_bytes: int) -> UploadError:
    return UploadError(413, f"the upload is {size}, more than the {max_bytes} bytes allowed")


async def _capped(request: Request, limit: int, max_bytes: int) -> AsyncGenerator[bytes, None]:
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            raise _too_large(f"over {limit} bytes", max_bytes)
        yield chunk


async def _received(request: Request, max_bytes: int) -> UploadFile:
    is_form = request.headers.get("content-type", "").lower().startswith("multipart/form-data")
    limit = max_bytes + FORM_OVERHEAD if is_form else max_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(f"{declared} bytes", max_bytes)
    stream = _capped(request, limit, max_bytes)
    if not is_form:
        body = UploadFile(SpooledTemporaryFile(max_size=SPOOL_BYTES), size=0,
                          filename="body")
        try:
            async for chunk in stream:
                await body.write(chunk)
        except BaseException:
            await body.close()
            raise
        return body
    try:
        form = await _FormParser(request.headers, stream, max_files=1, max_fields=8,
                                 max_part_size=MAX_FIELD_BYTES).parse()
    except MultiPartException as error:
        raise UploadError(400, f"unreadable form: {error.message}") from None
    upload = form.get(FILE_FIELD)
    if not isinstance(upload, UploadFile):
        await form.close()
        raise UploadError(400, f"no image: send it in a form field named {FILE_FIELD!r} or as the "
                               "request body")
    return upload


@contextlib.asynccontextmanager
async def uploaded_image(request: Request, max_bytes: int,
                         timeout_s: float) -> AsyncIterator[UploadFile]:
    """The image of a request, as a file at its start: the form field `file` of a multipart
    upload, or the raw body (named "body"); closed (its temporary file deleted) on leaving.
    Raises UploadError: 413 past `max_bytes`, 408 when it takes over `timeout_s` to arrive, 400
    for a missing or empty image or a client gone before the end."""
    try:
        async with asyncio.timeout(timeout_s):
            upload = await _received(request, max_bytes)
    except TimeoutError:
        raise UploadError(408, f"the upload did not arrive within {timeout_s:g} s") from None
    except ClientDisconnect:
        raise UploadError(400, "the client left before the upload ended") from None
    except OSError as error:  # no descriptor or disk space left for the spooled file
        raise UploadError(503, f"cannot take an upload now ({error.strerror}); try again") from None
    try:
        if not upload.size:
            raise UploadError(400, "the upload is empty")
        if upload.size > max_bytes:
            raise _too_large(f"{upload.size} bytes", max_bytes)
        await upload.seek(0)
        yield upload
    finally:
        await upload.close()


def image_pixels(upload: UploadFile) -> np.ndarray:
    """The CNN's pixels of an uploaded image, decoded as predict decodes a file. Raises
    UploadError: 413 for an image with too many pixels, 400 for anything else undecodable."""
    try:
        return load_pixels(upload.file)
    except ImageTooLarge as error:
        raise UploadError(413, str(error)) from None
    except BadImage as error:
        raise UploadError(400, str(error)) from None
