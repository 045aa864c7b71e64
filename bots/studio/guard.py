"""The studio's guard: every request must carry the run's token, and name this `Host`.

The token comes in the URL the studio printed; the page keeps it in memory and sends it with
each request (`x-studio-token`, or `?token=` where a header cannot go: a picture, the change
stream). No cookie holds it: browsers send a cookie to every port of 127.0.0.1, so any other
local server the user opens would get it, and any page on another port could make requests
with it. A request naming another `Host` is refused, so no web page can reach the studio through
DNS rebinding. The page's own scripts and styles (`/assets/`, public code) need no token."""

from __future__ import annotations

import hmac
from urllib.parse import parse_qs

from starlette.types import ASGIApp, Receive, Scope, Send


class Guard:
    """Refuses every request without the run's token, or naming another Host; passes the
    rest to the bots (`/poe/...`) or the site."""

    def __init__(self, site: ASGIApp, bots: ASGIApp, *, port: int, token: str) -> None:
        self.site = site
        self.bots = bots  # /poe/...
        self.token = token
        self.hosts = {f"127.0.0.1:{port}", f"localhost:{port}"}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.site(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        if headers.get("host", "") not in self.hosts:
            await plain(send, 403, "refused: the studio answers only at 127.0.0.1 (Host header)")
            return
        public = scope["method"] == "GET" and scope["path"].startswith("/assets/")
        if not public and not self._has_token(scope, headers):
            await plain(
                send, 403, "refused: open the URL the studio printed, with its token (?token=...)"
            )
            return
        inner = self.bots if scope["path"].startswith("/poe/") else self.site
        await inner(scope, receive, send)

    def _has_token(self, scope: Scope, headers: dict[str, str]) -> bool:
        given = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token", [""])[0]
        given = given or headers.get("x-studio-token", "")
        return hmac.compare_digest(given.encode(), self.token.encode())


async def plain(send: Send, status: int, text: str) -> None:
    body = text.encode()
    headers = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", b"%d" % len(body)),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
