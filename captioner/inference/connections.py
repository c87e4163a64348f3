"""Deadlines and a cap for the service's connections: uvicorn's HTTP protocol (h11) with a client
bounded in the time it takes to send a request and in how far it sends ahead of its answers, the
open connections capped, and a refused request's connection closed.

Hand-written because uvicorn offers only part of it: its keep-alive timeout closes an idle
connection after a response, but any byte received cancels it, and nothing times a new connection
or one sending its headers slowly, nor bounds the requests it reads ahead; its `limit_concurrency`
answers 503 to requests past a count of connections, so sockets held open by one client would
refuse everybody else's requests. Here:
- a connection waiting for a request's headers (a new one, or one whose previous answer was sent)
  is closed once it has waited `client_timeout_s`, whatever bytes trickle in;
- a request refused before its body ended is closed LINGER_S after the answer (time for the client
  to read it rather than a reset), and one refused whole is answered with `Connection: close`
  (CloseAfterRefusal);
- a client that sends more than MAX_PIPELINED_BYTES of requests ahead of its answers is cut off
  (uvicorn would read and hold them all), and a connection closed with answers unread is aborted;
- past `max_connections`, the connection that has waited longest for the client (for headers, or
  for a body still arriving) is closed, so a request that arrives whole is still answered while
  hundreds of stalled sockets are open.
The body of a request is timed by the service (uploads.py), which answers 408.
"""

from __future__ import annotations

import asyncio
import resource
import time

import h11
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from captioner.core.errors import PipelineError

# How long a connection refused before its body ended stays open for the client to read the answer.
LINGER_S = 2.0
# Requests a client may send ahead of its answers (pipelining) before it is cut off.
MAX_PIPELINED_BYTES = 64 * 1024
# File descriptors the server needs beyond two per connection (its socket, and an upload's spooled
# file): the model, the loop, the libraries.
SPARE_DESCRIPTORS = 256


class DeadlineProtocol(H11Protocol):
    """uvicorn's h11 protocol with deadlines and a connection cap (subclassed by
    `deadline_protocol` with the values)."""

    client_timeout_s: float
    max_connections: int

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.deadline: asyncio.TimerHandle | None = None
        # Since when this connection has waited for the client: for a request's headers, or for
        # the rest of its body; None while the server works on the request.
        self.waiting_since: float | None = None
        super().connection_made(transport)
        self._await_request(self.client_timeout_s)
        if len(self.connections) > self.max_connections:
            oldest = min((connection for connection in self.connections
                          if getattr(connection, "waiting_since", None) is not None),
                         key=lambda connection: connection.waiting_since)
            oldest.close_now()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel(self.deadline)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.cycle is not None and not self.cycle.response_complete and \
                len(self.conn.trailing_data[0]) > MAX_PIPELINED_BYTES:
            self.close_now()

    def handle_events(self) -> None:
        cycle = self.cycle
        super().handle_events()
        if self.cycle is not cycle:  # a request's headers arrived whole
            self._cancel(self.deadline)
            self.deadline = None
            self.waiting_since = time.monotonic() if self._body_arriving() else None
        elif self.deadline is None and not self._body_arriving():
            self.waiting_since = None

    def on_response_complete(self) -> None:
        # Armed first: the call below may start a pipelined request, which cancels it.
        self._await_request(LINGER_S if self._body_arriving() else self.client_timeout_s)
        super().on_response_complete()

    def close_now(self) -> None:
        """Closes the connection (a deadline passed, the cap needs its place, or the client sent
        too far ahead), dropping what the client has not read."""
        self._cancel(self.deadline)
        self.deadline, self.waiting_since = None, None
        if self.transport.get_write_buffer_size():
            self.transport.abort()
        elif not self.transport.is_closing():
            self.transport.close()

    def _body_arriving(self) -> bool:
        return self.conn.their_state is h11.SEND_BODY

    def _await_request(self, seconds: float) -> None:
        self._cancel(self.deadline)
        self.waiting_since = time.monotonic()
        self.deadline = self.loop.call_later(seconds, self.close_now)

    @staticmethod
    def _cancel(timer: asyncio.TimerHandle | None) -> None:
        if timer is not None:
            timer.cancel()


def deadline_protocol(client_timeout_s: float, max_connections: int) -> type[DeadlineProtocol]:
    """The protocol class to give uvicorn.Config(http=...) for these limits."""
    return type("DeadlineProtocol", (DeadlineProtocol,),
                {"client_timeout_s": client_timeout_s, "max_connections": max_connections})


class CloseAfterRefusal:
    """Answers a refusal (status 400 or more) to a request that arrived whole with `Connection:
    close`. One whose body had not all arrived is left to DeadlineProtocol's linger: closing at once
    would reset the connection under a client still sending, before it read the answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        whole = [headers.get("content-length", "0") == "0" and
                 "transfer-encoding" not in headers]

        async def receiving() -> Message:
            message = await receive()
            if message["type"] == "http.request" and not message.get("more_body", False):
                whole[0] = True
            return message

        async def closing(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] >= 400 and whole[0]:
                MutableHeaders(scope=message)["connection"] = "close"
            await send(message)

        await self.app(scope, receiving, closing)


def reserve_descriptors(max_connections: int) -> None:
    """Raises this process's open-file limit to hold `max_connections` sockets, a spooled upload
    for each and its own files, as far as the hard limit allows; PipelineError when that is not
    enough."""
    needed = 2 * max_connections + SPARE_DESCRIPTORS
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            raise PipelineError(f"--max-connections {max_connections}: needs {needed} open files, "
                                f"more than this process may open ({hard}); give at most "
                                f"{(hard - SPARE_DESCRIPTORS) // 2}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
