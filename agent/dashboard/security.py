"""The dashboard's gate: an access token (printed once, as a URL), then an HttpOnly
SameSite=Strict session cookie; every POST carries the session's CSRF token and comes from the
dashboard's own origin.  Everything else is 401/403 with a stable code and no page content.

Every path lives under a random prefix (`Gate.root`, part of the printed URL) and the session
cookie is scoped to it: cookies know no ports, so without it any other server on this host's
loopback would receive the cookie when the browser visited it; with it, only a request for a
path under the secret prefix carries the cookie.  Anything outside the prefix is 404.

A session ends after `SESSION_IDLE_S` without a request (a page's open live stream counts as
use), and `SESSION_MAX_S` after it opened, whatever its use: a cookie copied off a machine, or
a browser left logged in, stops working then — its live stream too (the page reloads and says
so; the printed URL opens a new session).

Every response says `Content-Security-Policy: default-src 'self'` (no third-party requests, no
inline scripts), is never cached and never framed; no CORS headers are ever sent."""

from __future__ import annotations

import hmac
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from agent.logs import log_event
from events.errors import HiveError, Internal, NotFound, Restricted, Unauthorized

COOKIE = "hive_dashboard"
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"
MAX_SESSIONS = 64
SESSION_IDLE_S = 12 * 3600  # a session unused this long is closed
SESSION_MAX_S = 7 * 86_400  # and any session this long after it opened
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none';"
        " object-src 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
log = logging.getLogger("hive.dashboard")
Next = Callable[[Request], Awaitable[Response]]


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


@dataclass
class Session:
    csrf: str  # the CSRF token every POST of this session carries
    opened: float  # (the gate's clock)
    seen: float  # its last request


@dataclass
class Gate:
    """The access token, the sessions it opened (by session id), and the Host values this
    server answers to (a DNS-rebinding page names another host)."""

    hosts: set[str] | None  # None: any (bound to every address, 0.0.0.0 or ::)
    token: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    root: str = field(default_factory=lambda: "/" + secrets.token_urlsafe(12))
    sessions: dict[str, Session] = field(default_factory=dict)
    clock: Callable[[], float] = time.time  # (wall time: a suspended machine's too)

    def open_session(self) -> str:
        while len(self.sessions) >= MAX_SESSIONS:  # the oldest goes first
            self.sessions.pop(next(iter(self.sessions)))
        session, now = secrets.token_urlsafe(32), self.clock()
        self.sessions[session] = Session(secrets.token_urlsafe(32), now, now)
        return session

    def csrf_of(self, request: Request) -> str | None:
        """The CSRF token of the request's session; None without a live one (an expired
        session is closed here).  Counts as the session's use."""
        found = self.live(request.cookies.get(COOKIE))
        return None if found is None else found.csrf

    def live(self, session: str | None) -> Session | None:
        """The session if it is open and not expired (it is closed if it is), now used."""
        found = None if session is None else self.sessions.get(session)
        if session is None or found is None:
            return None
        now = self.clock()
        if now - found.seen > SESSION_IDLE_S or now - found.opened > SESSION_MAX_S:
            del self.sessions[session]
            log_event(log, logging.INFO, "session_expired", sessions=len(self.sessions))
            return None
        found.seen = now
        return found

    def check_host(self, request: Request) -> None:
        if self.hosts is not None and request.headers.get("host", "") not in self.hosts:
            raise Restricted("this dashboard answers only to its own address (Host)")

    def check_post(self, request: Request, sent: str | None) -> None:
        """A POST must come from this origin and carry the session's CSRF token."""
        origin = request.headers.get("origin")
        host = request.headers.get("host", "")
        if origin is not None and urlsplit(origin).netloc != host:
            raise Restricted("a cross-site request (Origin) is refused")
        expected = self.csrf_of(request)
        if expected is None or sent is None or not _same(expected, sent):
            raise Restricted("missing or wrong CSRF token")


def refusal(error: HiveError, status: int) -> Response:
    return secure(JSONResponse({"error": error.to_dict()}, status_code=status))


def secure(response: Response) -> Response:
    for name, value in HEADERS.items():
        response.headers[name] = value
    return response


def middleware(gate: Gate) -> Callable[[Request, Next], Awaitable[Response]]:
    """Host check, then the token's first visit (→ cookie and a redirect to the clean URL),
    then the session: without one, 401 and nothing else."""

    async def guard(request: Request, call_next: Next) -> Response:
        try:
            gate.check_host(request)
        except Restricted as error:
            log_event(log, logging.WARNING, "refused", code=error.code, why="host")
            return refusal(error, 403)
        path = request.url.path
        if path == gate.root:
            return secure(RedirectResponse(f"{gate.root}/", status_code=307))
        if not path.startswith(f"{gate.root}/"):
            return refusal(
                NotFound("nothing here: open the dashboard with the URL it printed"), 404
            )
        request.scope["root_path"] = gate.root  # the routes see the path after the prefix
        token = request.query_params.get("token")
        if token is not None and _same(token, gate.token):
            session = gate.open_session()
            response = RedirectResponse(request.url.path, status_code=303)
            response.set_cookie(
                COOKIE, session, httponly=True, samesite="strict", path=gate.root, secure=False
            )
            log_event(log, logging.INFO, "session_opened", sessions=len(gate.sessions))
            return secure(response)
        if gate.csrf_of(request) is None:
            log_event(log, logging.INFO, "refused", code="UNAUTHORIZED", path=request.url.path)
            return refusal(Unauthorized("open the dashboard with the URL it printed"), 401)
        try:
            response = await call_next(request)
        except Exception:  # a damaged store, a bug: the answer keeps the headers, no traceback
            log.exception("dashboard request %s %s failed", request.method, request.url.path)
            return refusal(Internal("the dashboard hit an unexpected error (see its log)"), 500)
        return secure(response)

    return guard
