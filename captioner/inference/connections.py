"""Deadlines and a cap for the service's connections: uvicorn's HTTP protocol (h11), with a client
bounded in the time it takes to send a request's headers, and the open connections capped.

Hand-written because uvicorn offers only part of it: its keep-alive timeout closes an idle
connection after a response, but any byte received cancels it, and nothing times a new connection
or one sending its headers slowly; its `limit_concurrency` answers 503 to requests past a count of
connections, so sockets held open by one client would refuse everybody else's requests. Here every
connection waiting for a request's headers (a new one, or one whose previous answer was sent) is
closed once it has waited `client_timeout_s`; a request refused before its body ended is closed
LINGER_S after the answer (time for the client to read it rather than a reset); and past
`max_connections` the connection that has waited longest for its headers is closed, so requests
that arrive whole are still answered while hundreds of stalled sockets are open. The body of a
request is timed by the service (uploads.py), which answers 408.
"""

from __future__ import annotations

import asyncio
import resource
import time

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from captioner.core.errors import PipelineError

# How long a connection refused before its body ended stays open for the client to read the answer.
LINGER_S = 2.0
# File descriptors the server needs beyond its connections: the model, temporary files, the loop.
SPARE_DESCRIPTORS = 256


class DeadlineProtocol(H11Protocol):
    """uvicorn's h11 protocol with header deadlines and a connection cap (subclassed by
    `deadline_protocol` with the values)."""

    client_timeout_s: float
    max_connections: int

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.deadline: asyncio.TimerHandle | None = None
        # When this connection began waiting for a request's headers; None while it has a request.
        self.waiting_since: float | None = None
        super().connection_made(transport)
        self._await_request(self.client_timeout_s)
        if len(self.connections) > self.max_connections:
            oldest = min((connection for connection in self.connections
                          if getattr(connection, "waiting_since", None) is not None),
                         key=lambda connection: connection.waiting_since)
            oldest.close_now()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_deadline()
        super().connection_lost(exc)

    def handle_events(self) -> None:
        cycle = self.cycle
        super().handle_events()
        if self.cycle is not cycle:  # a request's headers arrived whole
            self._cancel_deadline()
            self.waiting_since = None

    def on_response_complete(self) -> None:
        # Armed first: the call below may start a pipelined request, which cancels it.
        unfinished = self.conn.their_state is h11.SEND_BODY
        self._await_request(LINGER_S if unfinished else self.client_timeout_s)
        super().on_response_complete()

    def close_now(self) -> None:
        """Closes the connection (a deadline passed, or the cap needs its place)."""
        self._cancel_deadline()
        self.waiting_since = None
        if not self.transport.is_closing():
            self.transport.close()

    def _await_request(self, seconds: float) -> None:
        self._cancel_deadline()
        self.waiting_since = time.monotonic()
        self.deadline = self.loop.call_later(seconds, self.close_now)

    def _cancel_deadline(self) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None


def deadline_protocol(client_timeout_s: float, max_connections: int) -> type[DeadlineProtocol]:
    """The protocol class to give uvicorn.Config(http=...) for these limits."""
    return type("DeadlineProtocol", (DeadlineProtocol,),
                {"client_timeout_s": client_timeout_s, "max_connections": max_connections})


def reserve_descriptors(max_connections: int) -> None:
    """Raises this process's open-file limit to hold `max_connections` sockets and its own files,
    as far as the hard limit allows; PipelineError when that is not enough."""
    needed = max_connections + SPARE_DESCRIPTORS
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            raise PipelineError(f"--max-connections {max_connections}: needs {needed} open files, "
                                f"more than this process may open ({hard}); give at most "
                                f"{hard - SPARE_DESCRIPTORS}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
