"""`python -m captioner serve`: the caption service (FastAPI) and its web page.

POST /caption takes one image (a multipart form's `file` field, or the raw body) and answers with
its caption, the beam's alternatives, the model's identity and the time taken; GET /health says
the service is up; GET /model gives a published model's card; GET / is a page that captions dropped
or picked photos, with nothing fetched from outside this package. It answers only to its own Host
names and, for POSTs, its own Origin (guards.py). Uploads are read within the connection deadlines
and cap (connections.py) into spooled files; a received image is admitted while fewer than
ServiceLimits.max_queue wait for a decoder, are decoded or wait for their caption (503 past it); a
pool of ServiceLimits.decoders threads decodes, which bounds decoding's memory; captions come in
micro-batches.
"""

from __future__ import annotations

import asyncio
import ctypes
import time
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.middleware.trustedhost import TrustedHostMiddleware

from captioner.inference.batching import MicroBatcher
from captioner.inference.captioning import ImageCaptioner
from captioner.inference.connections import CloseAfterRefusal, deadline_protocol
from captioner.inference.guards import SameOriginGuard, allowed_hosts
from captioner.inference.limits import ServiceLimits
from captioner.inference.uploads import FILE_FIELD, UploadError, image_pixels, uploaded_image

PAGE = Path(__file__).parent / "page"
RETRY_AFTER = {"Retry-After": "1"}
# glibc's mallopt parameter for the size from which blocks are mapped on their own.
M_MMAP_THRESHOLD = -3


@dataclass
class _Work:
    """What the running service holds: the decoders, the micro-batcher, the requests admitted."""

    decoders: ThreadPoolExecutor
    batcher: MicroBatcher
    admitted: int = 0


def create_app(captioner: ImageCaptioner, limits: ServiceLimits,
               hosts: Sequence[str] = allowed_hosts("127.0.0.1")) -> FastAPI:
    """The service for one loaded model, answering to the Host names `hosts`; its decoders and
    micro-batcher run while the app does."""
    state: dict[str, _Work] = {}

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        state["work"] = _Work(
            ThreadPoolExecutor(limits.decoders, thread_name_prefix="decoder"),
            MicroBatcher(lambda pixels: captioner.caption_pixels(np.stack(pixels)),
                         max_batch=captioner.extractor.batch_size, window_s=limits.batch_window_s))
        yield
        work = state.pop("work")
        work.decoders.shutdown()
        work.batcher.close()

    # No /docs or /redoc: their pages load scripts from a CDN. The schema stays at /openapi.json.
    app = FastAPI(title="captioner", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(hosts))
    app.add_middleware(SameOriginGuard)
    app.add_middleware(CloseAfterRefusal)
    app.mount("/page", StaticFiles(directory=PAGE), name="page")

    @app.exception_handler(UploadError)
    async def refused(_: Request, error: UploadError) -> JSONResponse:
        return JSONResponse({"error": error.problem}, status_code=error.status,
                            headers=RETRY_AFTER if error.status == 503 else None)

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(PAGE / "index.html")

    @app.get("/health")
    async def health() -> dict:
        """The service is up: its model and decoding settings, the images admitted (waiting for a
        decoder, decoding or waiting for a caption), and those waiting for the captioner."""
        work = state["work"]
        return {"status": "ok", "model": captioner.identity, "admitted": work.admitted,
                "waiting": work.batcher.waiting(), "decoding": asdict(captioner.settings)}

    @app.get("/model")
    async def model() -> JSONResponse:
        """The model card published with the model (docs/sharing.md); 404 for a model that has
        none (the train stage's models/)."""
        if captioner.card is None:
            return JSONResponse({"error": f"{captioner.identity['path']} has no model card: it "
                                          "is published with one by `dvc repro publish`"},
                                status_code=404)
        return JSONResponse(captioner.card)

    @app.post("/caption")
    async def caption(request: Request) -> JSONResponse:
        """Captions one image: a multipart form's `file` field, or the raw request body."""
        started = time.perf_counter()
        work = state["work"]
        admitted = False
        try:
            with work.batcher.arriving():
                async with uploaded_image(request, limits.max_upload_bytes,
                                          limits.client_timeout_s) as upload:
                    if work.admitted >= limits.max_queue:
                        raise UploadError(503, f"busy: {work.admitted} images are waiting or being "
                                               "captioned; try again")
                    work.admitted += 1
                    admitted = True
                    name = upload.filename or FILE_FIELD
                    pixels = await asyncio.wrap_future(work.decoders.submit(image_pixels, upload))
                future = work.batcher.submit(pixels)
            result = await asyncio.wrap_future(future)
        finally:
            if admitted:
                work.admitted -= 1
        return JSONResponse({"image": name, "caption": result.caption,
                             "alternatives": result.alternatives, "model": captioner.identity,
                             "seconds": round(time.perf_counter() - started, 4)})

    return app


def server_config(captioner: ImageCaptioner, limits: ServiceLimits, host: str, port: int,
                  names: Sequence[str] = ()) -> uvicorn.Config:
    """uvicorn's configuration of the service on `host`:`port`, answering to the names of
    guards.allowed_hosts, with the connection deadlines and cap of `limits`."""
    return uvicorn.Config(
        create_app(captioner, limits, allowed_hosts(host, names)), host=host, port=port,
        http=deadline_protocol(limits.client_timeout_s, limits.max_connections), ws="none",
        log_level="warning", access_log=False)


def return_freed_images() -> None:
    """Makes glibc give large freed blocks back to the system (elsewhere, nothing to do).

    glibc's mmap threshold grows to the largest block freed, so after one large image Pillow's
    16 MB blocks come from the heap and stay with the process once freed; a fixed 1 MB threshold
    maps each such block on its own and unmaps it when freed: after 8 decoded 6000x6000 RGBA PNGs
    a process went back to its size before them (590 MB) instead of staying at 1,000 MB.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    libc.mallopt(M_MMAP_THRESHOLD, 1024 * 1024)
