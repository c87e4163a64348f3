"""Only the service's own host and origin: the Host names it answers to, POSTs refused from other
origins, and a Content-Security-Policy that lets its page load only from itself.

The Host check is Starlette's TrustedHostMiddleware (400 for any other name, which stops DNS
rebinding: a page on another name that resolves to 127.0.0.1 sends that name). Starlette has no
guard for the Origin of a request (its CORSMiddleware only adds headers: a cross-origin "no-cors"
POST is still processed), so SameOriginGuard is written here.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable

from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")
WILDCARD_ADDRESSES = ("0.0.0.0", "::", "")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# The page's own script, style and fetches; the photos it shows are blob: URLs of local files.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob:; object-src 'none'; "
                               "base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def allowed_hosts(listen_host: str, names: Iterable[str] = ()) -> list[str]:
    """The Host names the service answers to: the address it listens on and the given names; on a
    loopback or wildcard address also the loopback names, and on a wildcard this machine's name.
    IPv6 addresses are bracketed, as a Host header writes them."""
    hosts = {listen_host, *names}
    if listen_host in LOOPBACK_NAMES or listen_host in WILDCARD_ADDRESSES or \
            listen_host.startswith("127."):
        hosts.update(LOOPBACK_NAMES)
    if listen_host in WILDCARD_ADDRESSES:
        hosts.update({socket.gethostname(), socket.getfqdn()})
    return sorted(f"[{host}]" if ":" in host else host.lower() for host in hosts if host)


class SameOriginGuard:
    """Refuses (403) a request that may change state whose Origin is not the service's own (the
    scheme and Host it was sent to), and adds SECURITY_HEADERS to every answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message).update(SECURITY_HEADERS)
            await send(message)

        headers = Headers(scope=scope)
        origin = headers.get("origin")
        own = f"{scope['scheme']}://{headers.get('host', '')}".lower()
        if scope["method"] not in SAFE_METHODS and origin is not None and origin.lower() != own:
            refusal = JSONResponse({"error": f"a request from {origin} (another origin) is refused"},
                                   status_code=403)
            await refusal(scope, receive, secured)
            return
        await self.app(scope, receive, secured)
