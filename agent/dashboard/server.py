"""The dashboard's web app (FastAPI): pages rendered with Jinja2 (autoescaped) from the store,
the operator's actions (agent/dashboard/actions.py), and `/events`, a server-sent-events
stream that says `change` whenever another connection commits to the store (SQLite's
`PRAGMA data_version`, polled every `POLL_S`); the page then reloads its live parts.

Every endpoint is `async`: it runs on the event loop's thread, where the store connection was
opened (no thread pool)."""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs

import anyio
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from agent.advisory.policy import PolicyConfig
from agent.dashboard import data, more, security
from agent.dashboard.actions import Operator
from agent.dashboard.security import CSRF_FIELD, CSRF_HEADER, Gate
from agent.node.backend import NodeBackend
from agent.store import Store
from events.errors import HiveError, NotFound, TooLarge

HERE = Path(__file__).parent
POLL_S = 0.25
HEARTBEAT_S = 15.0
MAX_FORM = 4096


class FleetView(Protocol):
    """What the fleet page reads of `FleetService` (agent/fleet/service.py)."""

    def topology(self) -> dict[str, Any]: ...

    def intents_list(self, limit: int = 200) -> list[dict[str, Any]]: ...

    def contribution_view(self, node: str | None = None) -> dict[str, Any]: ...

    def settlement_view(self, period: str | None = None) -> dict[str, Any]: ...

    @property
    def me(self) -> str: ...


@dataclass
class Context:
    """What the pages read and act through.  The store connection is the dashboard's own,
    opened on first use on each serving thread (SQLite connections stay on their thread)."""

    store_file: Path
    operator: Operator
    gate: Gate
    policy: PolicyConfig
    node: NodeBackend | None = None  # our Lightning node, when the agent runs one here
    fleet: FleetView | None = None  # the fleet service, when the agent runs in a fleet
    relays: Callable[[], list[dict[str, Any]]] | None = None  # the relay pool's status rows
    closing: bool = False  # set when the server stops: event streams end
    _stores: dict[int, Store] = field(default_factory=dict)
    chain_checks: data.ChainChecks = field(default_factory=data.ChainChecks)

    @property
    def store(self) -> Store:
        thread = threading.get_ident()
        if thread not in self._stores:
            self._stores[thread] = Store(self.store_file)
        return self._stores[thread]


def _when(ts: int | None) -> str:
    """A UTC date; a time no calendar holds (a stranger's 2**62) as its number, not a 500."""
    if ts is None:
        return "-"
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))
    except (OverflowError, OSError, ValueError, TypeError):
        return str(ts)


def _templates() -> Jinja2Templates:
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.filters["when"] = _when
    templates.env.filters["short"] = lambda v, n=12: str(v)[:n] + ("…" if len(str(v)) > n else "")
    return templates


async def _form(request: Request) -> dict[str, str]:
    """A small urlencoded form (no multipart: nothing here uploads files).  A bigger body is
    refused by its declared length, or as soon as it outgrows the limit: never held whole."""
    declared = request.headers.get("content-length", "0")
    if not declared.isdigit() or int(declared) > MAX_FORM:
        raise TooLarge(f"a form is at most {MAX_FORM} bytes")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM:
            raise TooLarge(f"a form is at most {MAX_FORM} bytes")
    return {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}


async def _checked(request: Request, ctx: Context) -> dict[str, str]:
    form = await _form(request)
    ctx.gate.check_post(request, form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER))
    return form


def create_app(ctx: Context) -> FastAPI:
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    templates = _templates()
    app.middleware("http")(security.middleware(ctx.gate))
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    def page(request: Request, name: str, status: int = 200, **values: Any) -> Response:
        values |= {
            "csrf": ctx.gate.csrf_of(request),
            "now": int(time.time()),
            "page": name,
            "root": ctx.gate.root,
        }
        return templates.TemplateResponse(request, f"{name}.html", values, status_code=status)

    @app.exception_handler(HiveError)
    async def refused(request: Request, error: HiveError) -> Response:
        status = 403 if error.code in ("RESTRICTED", "UNAUTHORIZED") else 400
        if error.code == "TOO_LARGE":  # an oversize form: no page either
            return security.refusal(error, 413)
        if error.code == "RESTRICTED":  # CSRF/Origin: no page, the code only
            return security.refusal(error, status)
        return page(request, "error", status, error=error.to_dict())

    _views(app, ctx, page)
    _actions(app, ctx, page)

    @app.get("/events")
    async def events(request: Request) -> Response:
        session = request.cookies.get(security.COOKIE)
        return StreamingResponse(_changes(ctx, session), media_type="text/event-stream")

    return app


Page = Callable[..., Response]


def _actions(app: FastAPI, ctx: Context, page: Page) -> None:
    """The POSTs: each checked (CSRF, Origin), then the operator's action, then a redirect."""

    @app.post("/approvals/{command_id}/{step}")
    async def vote(request: Request, command_id: str, step: str) -> Response:
        await _checked(request, ctx)
        await ctx.operator.vote(command_id, step)
        return RedirectResponse(f"{ctx.gate.root}/approvals", status_code=303)

    @app.post("/market/ranked", response_class=HTMLResponse)
    async def ranked(request: Request) -> Response:
        await _checked(request, ctx)
        rows = await ctx.operator.ranked()
        return page(request, "market", view=more.market(ctx.store), ranked=rows)

    @app.post("/advisors/{credential_id}/revoke")
    async def revoke(request: Request, credential_id: str) -> Response:
        await _checked(request, ctx)
        await ctx.operator.revoke(credential_id)
        return RedirectResponse(f"{ctx.gate.root}/advisors", status_code=303)


def _views(app: FastAPI, ctx: Context, page: Page) -> None:
    @app.get("/")
    async def home() -> Response:
        return RedirectResponse(f"{ctx.gate.root}/approvals", status_code=303)

    _live(app, page, "approvals", lambda: {"rows": data.approvals(ctx.store)})
    _live(app, page, "advisors",
          lambda: {"rows": data.credentials(ctx.store, ctx.policy, int(time.time())),
                   "hidden": data.hidden_held(ctx.store)})  # fmt: skip

    @app.get("/advisors/{credential_id}/revoke", response_class=HTMLResponse)
    async def revoke_form(request: Request, credential_id: str) -> Response:
        rows = data.credentials(ctx.store, ctx.policy, int(time.time()))
        row = next((r for r in rows if r["id"] == credential_id and r["revocable"]), None)
        if row is None:
            raise NotFound(f"no active credential {credential_id[:32]} granted by this node")
        return page(request, "revoke", row=row)

    @app.get("/receipts/{credential_id}", response_class=HTMLResponse)
    async def receipts(request: Request, credential_id: str, p: int = 0) -> Response:
        def read() -> dict[str, Any]:  # a first view of a long chain verifies all of it
            return data.receipts(ctx.store, credential_id, max(0, p), ctx.chain_checks)

        view = await anyio.to_thread.run_sync(read)  # off the agent's event loop
        return page(request, "receipts", view=view)

    _more_views(app, ctx, page)


def _more_views(app: FastAPI, ctx: Context, page: Page) -> None:
    @app.get("/node", response_class=HTMLResponse)
    async def node(request: Request) -> Response:
        view = data.node(ctx.store) | {
            "channels": await more.channels(ctx.node),
            "fees": more.fees_by_hour(ctx.store, int(time.time())),
            "has_node": ctx.node is not None,
            "relays": ctx.relays() if ctx.relays is not None else None,
        }
        return page(request, "node", view=view, actions=dict(ctx.operator.counts))

    _live(app, page, "escrow", lambda: {"view": more.escrow(ctx.store)})

    @app.get("/market", response_class=HTMLResponse)
    async def market(request: Request) -> Response:
        return page(request, "market", view=more.market(ctx.store))

    @app.get("/fleet", response_class=HTMLResponse)
    async def fleet(request: Request) -> Response:
        topo = ctx.fleet.topology() if ctx.fleet is not None else None
        graph = more.fleet_graph(topo) if topo is not None else None
        intents = ctx.fleet.intents_list(50) if ctx.fleet is not None else []
        money = None
        if ctx.fleet is not None:
            c, s = _or_error(ctx.fleet.contribution_view), _or_error(ctx.fleet.settlement_view)
            money = more.fleet_money(c, s, ctx.fleet.me)
        return page(request, "fleet", topology=topo, graph=graph, intents=intents, money=money)


def _live(app: FastAPI, page: Page, name: str, values: Callable[[], dict[str, Any]]) -> None:
    """A page `/name` and its fragment `/name/live` (what the page swaps in when the store
    changes), from the same values: one read, two templates."""

    async def whole(request: Request) -> Response:
        return page(request, name, **values())

    async def live(request: Request) -> Response:
        return page(request, f"{name}_live", **values())

    app.add_api_route(f"/{name}", whole, methods=["GET"], response_class=HTMLResponse)
    app.add_api_route(f"/{name}/live", live, methods=["GET"], response_class=HTMLResponse)


def _or_error(view: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """A fleet view, or its refusal (shown in its section; the rest of the page still is)."""
    try:
        return view()
    except HiveError as error:
        return {"state": "error", "error": str(error)}


async def _changes(ctx: Context, session: str | None) -> AsyncIterator[str]:
    """`event: change` each time the store changed; a comment now and then keeps it open.
    It ends when its session does (the page's script then reloads it: 401)."""
    store = ctx.store
    last, quiet = store.data_version(), 0.0
    yield "retry: 1000\n\n"
    while not ctx.closing:
        await anyio.sleep(POLL_S)
        if ctx.gate.live(session) is None:
            return
        version = store.data_version()
        quiet += POLL_S
        if version != last:
            last, quiet = version, 0.0
            yield f"event: change\ndata: {version}\n\n"
        elif quiet >= HEARTBEAT_S:
            quiet = 0.0
            yield ": still here\n\n"
