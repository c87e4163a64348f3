"""An uploaded image's bytes and pixels, read within the service's caps.

The body is read through a counting stream, so an upload over the cap is refused at the cap
whatever its Content-Length says; a multipart form is parsed by Starlette from that stream (its
parts are spooled in memory, or past 1 MB in a temporary file).
"""

from __future__ import annotations

import io
from collections.abc import AsyncGenerator

import numpy as np
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request

from captioner.inputs.pixels import BadImage, ImageTooLarge, load_pixels

# Room for a multipart form's boundaries and part headers around the image.
FORM_OVERHEAD = 64 * 1024
FILE_FIELD = "file"


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


async def image_bytes(request: Request, max_bytes: int) -> tuple[bytes, str]:
    """The image of a request and its name: the form field `file` of a multipart upload, or the
    raw body. Raises UploadError: 413 past `max_bytes`, 400 for a missing or empty image."""
    is_form = request.headers.get("content-type", "").startswith("multipart/form-data")
    limit = max_bytes + FORM_OVERHEAD if is_form else max_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(f"{declared} bytes", max_bytes)
    stream = _capped(request, limit, max_bytes)
    if not is_form:
        return b"".join([chunk async for chunk in stream]), "body"
    try:
        form = await MultiPartParser(request.headers, stream, max_files=1, max_fields=8).parse()
    except MultiPartException as error:
        raise UploadError(400, f"unreadable form: {error.message}") from None
    upload = form.get(FILE_FIELD)
    if not isinstance(upload, UploadFile):
        await form.close()
        raise UploadError(400, f"no image: send it in a form field named {FILE_FIELD!r} or as "
                               "the request body")
    data = await upload.read()
    await form.close()
    if len(data) > max_bytes:
        raise _too_large(f"{len(data)} bytes", max_bytes)
    return data, upload.filename or FILE_FIELD


def image_pixels(data: bytes) -> np.ndarray:
    """The CNN's pixels of an uploaded image, decoded as predict decodes a file. Raises
    UploadError: 413 for an image with too many pixels, 400 for anything else undecodable."""
    if not data:
        raise UploadError(400, "the upload is empty")
    try:
        return load_pixels(io.BytesIO(data))
    except ImageTooLarge as error:
        raise UploadError(413, str(error)) from None
    except BadImage as error:
        raise UploadError(400, str(error)) from None
