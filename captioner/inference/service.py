"""`python -m captioner serve`: the caption service (FastAPI) and its web page.

POST /caption takes one image (a multipart form's `file` field, or the raw body) and answers with
its caption, the beam's alternatives, the model's identity and the time taken; GET /health says
the service is up; GET / is a page that captions dropped or picked photos, with nothing fetched
from outside this package. Images are decoded in request threads and captioned in micro-batches.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict
from pathlib import Path

import numpy as np
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from captioner.inference.batching import MicroBatcher, QueueFull
from captioner.inference.captioning import ImageCaptioner
from captioner.inference.limits import ServiceLimits
from captioner.inference.uploads import UploadError, image_bytes, image_pixels

PAGE = Path(__file__).parent / "page"


def create_app(captioner: ImageCaptioner, limits: ServiceLimits) -> FastAPI:
    """The service for one loaded model; its micro-batcher runs while the app does."""
    state: dict[str, MicroBatcher] = {}

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        state["batcher"] = MicroBatcher(
            lambda pixels: captioner.caption_pixels(np.stack(pixels)),
            max_batch=captioner.extractor.batch_size, window_s=limits.batch_window_s,
            max_queue=limits.max_queue)
        yield
        state.pop("batcher").close()

    # No /docs or /redoc: their pages load scripts from a CDN. The schema stays at /openapi.json.
    app = FastAPI(title="captioner", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.mount("/page", StaticFiles(directory=PAGE), name="page")

    @app.exception_handler(UploadError)
    async def refused(_: Request, error: UploadError) -> JSONResponse:
        return JSONResponse({"error": error.problem}, status_code=error.status)

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(PAGE / "index.html")

    @app.get("/health")
    async def health() -> dict:
        """The service is up: its model and decoding settings, and the requests waiting."""
        return {"status": "ok", "model": captioner.identity, "waiting": state["batcher"].waiting(),
                "decoding": asdict(captioner.settings)}

    @app.post("/caption")
    async def caption(request: Request) -> JSONResponse:
        """Captions one image: a multipart form's `file` field, or the raw request body."""
        started = time.perf_counter()
        batcher = state["batcher"]
        with batcher.arriving():
            data, name = await image_bytes(request, limits.max_upload_bytes)
            pixels = await run_in_threadpool(image_pixels, data)
            try:
                future = batcher.submit(pixels)
            except QueueFull as error:
                return JSONResponse({"error": f"busy: {error}; try again"}, status_code=503,
                                    headers={"Retry-After": "1"})
        result = await asyncio.wrap_future(future)
        return JSONResponse({"image": name, "caption": result.caption,
                             "alternatives": result.alternatives, "model": captioner.identity,
                             "seconds": round(time.perf_counter() - started, 4)})

    return app
