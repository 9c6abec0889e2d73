"""The dashboard's gate with FastAPI's TestClient on a real store: the token's first visit,
the cookie, 401 without it, the Host and Origin checks, CSRF on every POST, the headers — and
that a refused request changes nothing (the store's dump before and after)."""

from __future__ import annotations

import argparse
import sqlite3
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.advisory.policy import PolicyConfig
from agent.dashboard.actions import HomeOperator
from agent.dashboard.command import hosts_for, loopback
from agent.dashboard.security import COOKIE, SESSION_IDLE_S, SESSION_MAX_S, Gate
from agent.dashboard.server import Context, create_app
from agent.settings import Settings
from agent.store import Store

with warnings.catch_warnings():  # starlette 0.46 names anyio's old BlockingPortal alias
    warnings.simplefilter("ignore", DeprecationWarning)
    from fastapi.testclient import TestClient

HOST = "testserver"


def dump(path: Path) -> list[str]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return list(conn.iterdump())
    finally:
        conn.close()


def context(tmp_path: Path, clock: Callable[[], float] = time.time) -> Context:
    """A dashboard's context on a real store (the gate's clock given)."""
    settings = Settings(home=tmp_path / "home")
    settings.root.mkdir(parents=True)
    Store(settings.store_file).close()
    operator = HomeOperator(settings, argparse.Namespace(relay=None, policy=None))
    return Context(settings.store_file, operator, Gate({HOST}, clock=clock), PolicyConfig())


def client_of(ctx: Context) -> TestClient:
    base = f"http://testserver{ctx.gate.root}"
    return TestClient(create_app(ctx), base_url=base, follow_redirects=False)


@pytest.fixture
def board(tmp_path: Path) -> tuple[TestClient, Gate, Settings, HomeOperator]:
    ctx = context(tmp_path)
    assert isinstance(ctx.operator, HomeOperator)
    return client_of(ctx), ctx.gate, ctx.operator.settings, ctx.operator


def login(client: TestClient, gate: Gate) -> str:
    first = client.get(f"/approvals?token={gate.token}")
    assert first.status_code == 303
    return gate.sessions[client.cookies[COOKIE]].csrf


def test_without_the_token_every_path_is_401_and_shows_nothing(board) -> None:
    client, gate, _, _ = board
    for path in ("/", "/approvals", "/advisors", "/node", "/events", "/static/app.js",
                 "/approvals/live", "/nothing-here", "/approvals?token=wrong"):  # fmt: skip
        answer = client.get(path)
        assert answer.status_code == 401, path
        assert answer.json()["error"]["code"] == "UNAUTHORIZED"
        assert "<html" not in answer.text and "Approvals" not in answer.text
    client.cookies.set(COOKIE, "forged-session")
    assert client.get("/approvals").status_code == 401


def test_the_token_sets_a_strict_httponly_cookie_and_redirects_to_the_clean_url(board) -> None:
    client, gate, _, _ = board
    first = client.get(f"/advisors?token={gate.token}")
    assert first.status_code == 303
    assert first.headers["location"] == f"{gate.root}/advisors"  # the token leaves the bar
    cookie = first.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    assert f"path={gate.root.lower()};" in cookie  # sent only under the secret prefix
    page = client.get("/advisors")
    assert page.status_code == 200 and "Advisors and budgets" in page.text
    assert gate.token not in page.text
    assert page.headers["content-security-policy"].startswith("default-src 'self'")
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["cache-control"] == "no-store"
    assert page.headers["referrer-policy"] == "same-origin"  # a POST keeps its Origin
    cross = client.get("/advisors", headers={"Origin": "https://evil.example"})
    assert not [h for h in cross.headers if h.lower().startswith("access-control")]


def test_another_host_header_is_refused_even_with_the_cookie(board) -> None:
    client, gate, _, _ = board
    login(client, gate)
    answer = client.get("/approvals", headers={"Host": "evil.example:8787"})
    assert answer.status_code == 403 and answer.json()["error"]["code"] == "RESTRICTED"


def test_a_post_without_the_csrf_token_or_from_another_origin_changes_nothing(board) -> None:
    client, gate, settings, operator = board
    csrf = login(client, gate)
    before = dump(settings.store_file)
    attempts = [
        ({}, {}),  # no token
        ({"csrf": "wrong"}, {}),
        ({"csrf": csrf}, {"Origin": "https://evil.example"}),  # cross-site, right token
        ({"csrf": csrf}, {"Origin": "null"}),
    ]
    for form, headers in attempts:
        answer = client.post("/approvals/abcdef123456/approve", data=form, headers=headers)
        assert answer.status_code == 403, (form, headers)
        assert answer.json()["error"]["code"] == "RESTRICTED"
    revoke = client.post("/advisors/" + "ab" * 16 + "/revoke", data={})
    assert revoke.status_code == 403
    assert dump(settings.store_file) == before
    assert not operator.counts  # refused before any action ran


def test_a_forged_approval_id_is_refused_with_its_code_and_changes_nothing(board) -> None:
    client, gate, settings, operator = board
    csrf = login(client, gate)
    before = dump(settings.store_file)
    answer = client.post("/approvals/abcdef123456/approve", data={"csrf": csrf})
    assert answer.status_code == 400
    assert "INVALID_PARAMS" in answer.text
    by_header = client.post(
        "/approvals/abcdef123456/confirm",
        headers={"X-CSRF-Token": csrf, "Origin": "http://testserver"},
    )
    assert by_header.status_code == 400
    bad_step = client.post("/approvals/abcdef123456/launch", data={"csrf": csrf})
    assert bad_step.status_code == 400
    assert dump(settings.store_file) == before
    assert operator.counts == {"approve:INVALID_PARAMS": 1, "confirm:INVALID_PARAMS": 1,
                               "launch:INVALID_PARAMS": 1}  # fmt: skip
    for path in ("/escrow", "/market", "/fleet", "/advisors", "/receipts/" + "ab" * 16):
        assert client.get(path).status_code == 200, path
    node = client.get("/node")
    assert "approve:INVALID_PARAMS" in node.text  # counted, and shown


def test_the_session_of_one_client_is_not_anothers(board) -> None:
    client, gate, _, _ = board
    login(client, gate)
    other = TestClient(client.app, base_url=f"http://testserver{gate.root}", follow_redirects=False)
    other_csrf = login(other, gate)
    answer = client.post("/approvals/abcdef123456/approve", data={"csrf": other_csrf})
    assert answer.status_code == 403


def test_the_hosts_answered_to() -> None:
    assert loopback("127.0.0.1") and loopback("::1") and loopback("localhost")
    assert not loopback("0.0.0.0") and not loopback("192.168.1.5")  # noqa: S104
    assert hosts_for("127.0.0.1", 8787) == {
        "127.0.0.1:8787", "localhost:8787", "[::1]:8787"}  # fmt: skip
    # what browsers send: an IPv6 address in brackets, and no port for port 80
    assert hosts_for("fd00::5", 8787) == {"[fd00::5]:8787"}
    assert hosts_for("192.168.1.5", 80) == {"192.168.1.5:80", "192.168.1.5"}
    assert hosts_for("192.168.1.5", 8080) == {"192.168.1.5:8080"}
    assert hosts_for("0.0.0.0", 80) is None  # noqa: S104 - any Host; the token still guards


def test_a_dashboard_bound_to_an_ipv6_address_or_port_80_answers_what_browsers_send(
    tmp_path: Path,
) -> None:
    """`--host fd00::5` was refused for every browser (it sends `Host: [fd00::5]:8787`), and
    `--port 80` too (browsers leave the default port out of Host)."""
    settings = Settings(home=tmp_path / "home")
    settings.root.mkdir(parents=True)
    operator = HomeOperator(settings, argparse.Namespace(relay=None, policy=None))
    for bound, port, sent in (
        ("fd00::5", 8787, "[fd00::5]:8787"),
        ("192.168.1.5", 80, "192.168.1.5"),
    ):
        gate = Gate(hosts_for(bound, port))
        app = create_app(Context(settings.store_file, operator, gate, PolicyConfig()))
        client = TestClient(app, base_url=f"http://testserver{gate.root}", follow_redirects=False)
        first = client.get(f"/approvals?token={gate.token}", headers={"Host": sent})
        assert first.status_code == 303, (bound, port)
        assert client.get("/approvals", headers={"Host": sent}).status_code == 200
        assert client.get("/approvals", headers={"Host": "evil.example"}).status_code == 403


def test_nothing_lives_outside_the_secret_prefix(board) -> None:
    """Every page is under a random prefix (the cookie is scoped to it: cookies know no
    ports, so another server on this host's loopback never receives it); outside it, even
    with a valid session, there is nothing but 404."""
    client, gate, _, _ = board
    login(client, gate)
    assert client.get("/approvals").status_code == 200
    outside = TestClient(client.app, follow_redirects=False)  # same cookie jar, no prefix
    outside.cookies.set(COOKIE, client.cookies[COOKIE])
    for path in ("/", "/approvals", f"{gate.root}x/approvals", f"/static{gate.root}/app.js"):
        answer = outside.get(path)
        assert answer.status_code == 404, path
        assert answer.json()["error"]["code"] == "NOT_FOUND" and "<html" not in answer.text
    bare = outside.get(gate.root)  # the prefix without its slash: to the pages
    assert bare.status_code == 307 and bare.headers["location"] == f"{gate.root}/"
    assert outside.get(f"/?token={gate.token}").status_code == 404  # the token alone: nothing


def test_an_unexpected_failure_is_a_500_with_the_headers_and_no_traceback(board) -> None:
    """A damaged store (a table gone) makes a page fail in a way nobody planned for: the
    answer is still a typed INTERNAL with every security header, and nothing of the Python
    error (before, Starlette's bare 500 went out without the CSP and the no-store)."""
    client, gate, settings, _ = board
    login(client, gate)
    assert client.get("/advisors").status_code == 200
    conn = sqlite3.connect(settings.store_file)
    conn.execute("DROP TABLE mgmt_credentials")
    conn.commit()
    conn.close()
    answer = client.get("/advisors")
    assert answer.status_code == 500
    assert answer.json()["error"]["code"] == "INTERNAL"
    assert "Traceback" not in answer.text and "sqlite" not in answer.text.lower()
    assert answer.headers["content-security-policy"].startswith("default-src 'self'")
    assert answer.headers["cache-control"] == "no-store"
    assert answer.headers["x-frame-options"] == "DENY"


def test_a_session_ends_when_idle_and_after_its_lifetime(tmp_path: Path) -> None:
    """A copied cookie or a browser left logged in stops working: after 12 h without a
    request, and 7 days after the session opened however busy; the URL opens a new one."""
    now = [1_000.0]
    ctx = context(tmp_path, clock=lambda: now[0])
    client, gate = client_of(ctx), ctx.gate
    login(client, gate)
    now[0] += SESSION_IDLE_S - 1
    assert client.get("/approvals").status_code == 200  # (and that request counts as use)
    now[0] += SESSION_IDLE_S - 1
    assert client.get("/approvals").status_code == 200
    now[0] += SESSION_IDLE_S + 1
    idle = client.get("/approvals")
    assert idle.status_code == 401 and idle.json()["error"]["code"] == "UNAUTHORIZED"
    assert gate.sessions == {}
    login(client, gate)  # the printed URL opens a new session
    for _ in range(SESSION_MAX_S // (SESSION_IDLE_S - 1)):
        now[0] += SESSION_IDLE_S - 1
        assert client.get("/approvals").status_code == 200
    now[0] += SESSION_IDLE_S - 1  # busy, but seven days old
    assert client.get("/approvals").status_code == 401


@pytest.mark.anyio
async def test_a_live_stream_keeps_its_session_and_ends_with_it(tmp_path: Path) -> None:
    """A page's open event stream is use (a tab left open on a quiet node does not idle out),
    and it ends when its session does: it went on sending changes to a session expired."""
    import anyio

    from agent.dashboard.server import _changes

    now = [1_000.0]
    ctx = context(tmp_path, clock=lambda: now[0])
    gate = ctx.gate
    sid = gate.open_session()
    stream = _changes(ctx, sid)
    assert await stream.__anext__() == "retry: 1000\n\n"
    ended = anyio.Event()

    async def read() -> None:
        async for _ in stream:  # (nothing changes in the store: it only waits)
            pass
        ended.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(read)
        now[0] += SESSION_IDLE_S - 1
        await anyio.sleep(0.6)  # (the stream looks at its session every 0.25 s)
        assert gate.sessions[sid].seen == now[0] and not ended.is_set()  # used, not idle
        now[0] += SESSION_MAX_S
        with anyio.fail_after(5):
            await ended.wait()
    assert gate.sessions == {}
