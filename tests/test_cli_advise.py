"""`hive-agent advise` and `hive-agent schemas` as a user runs them: the real CLI as a
subprocess, a real relay and a real `hive-agent node` — exit statuses for a refusal (77) and no
answer in time (75), the catalogue listing, and parameters checked before anything connects."""

from __future__ import annotations

import json
import re
import socket
import time
from pathlib import Path

import pytest

from agent.advisory import schemas
from agent.errors import EX_NOPERM, EX_TEMPFAIL
from agent.store import Store
from tests.advisory_world import world
from tests.test_advisory_crash import NodeProcess, my_channels
from tests.test_crash import hive, new_agent

HEX = "ab" * 32


@pytest.fixture
def pair(tmp_path: Path, relays):
    """A running node agent on a simulated node, and an advisor holding a fee-policy credential."""
    url = relays().start()
    node_home, advisor_home = tmp_path / "node", tmp_path / "advisor"
    node_pub, advisor_pub = new_agent(node_home), new_agent(advisor_home)
    node = NodeProcess(node_home, url)
    node.start()
    granted = hive(node_home, "credential", "grant", advisor_pub, "--schema", "hive:fee-policy/*",
                   "--relay", url)  # fmt: skip
    assert granted.returncode == 0, granted.stderr
    assert hive(advisor_home, "run", "--until-idle", "--relay", url).returncode == 0
    yield node, node_pub, advisor_home, url
    node.stop()


def test_an_answered_command_exits_0(pair) -> None:
    node, node_pub, advisor_home, url = pair
    scid = my_channels(node.home)[0][0]["scid"]
    done = hive(advisor_home, "--json", "advise", node_pub, "fee-policy", "set_single",
                f"channel={scid}", "fee_ppm=120", "--relay", url, "--timeout", "20")  # fmt: skip
    assert done.returncode == 0, (done.stdout, done.stderr)
    answer = json.loads(done.stdout)
    assert answer["receipt"]["status"] == "ok" and "error" not in answer


def test_a_refused_command_exits_77_with_the_nodes_code(pair) -> None:
    node, node_pub, advisor_home, url = pair
    refused = hive(advisor_home, "advise", node_pub, "fee-policy", "set_single",
                   "channel=999x9x9", "fee_ppm=120", "--relay", url, "--timeout", "20")  # fmt: skip
    assert refused.returncode == EX_NOPERM == 77
    lines = refused.stdout.splitlines()
    assert lines[0].startswith("sent ") and lines[0].endswith(": hive:fee-policy/v1 set_single")
    assert lines[1:] == ["error: NOT_FOUND: no open channel 999x9x9"]
    assert refused.stderr == (
        "error: COMMAND_REFUSED: the node refused hive:fee-policy/v1 set_single (NOT_FOUND)\n"
    )
    as_json = hive(advisor_home, "--json", "advise", node_pub, "fee-policy", "set_single",
                   "channel=999x9x9", "fee_ppm=121", "--relay", url, "--timeout", "20")  # fmt: skip
    assert as_json.returncode == 77
    answer = json.loads(as_json.stdout)
    assert answer["error"] == {
        "code": "COMMAND_REFUSED",
        "message": "the node refused hive:fee-policy/v1 set_single (NOT_FOUND)",
    }
    assert answer["receipt"]["error"]["code"] == "NOT_FOUND"


def test_no_answer_in_time_exits_75(pair) -> None:
    node, node_pub, advisor_home, url = pair
    node.stop()  # nobody answers
    started = time.monotonic()
    late = hive(advisor_home, "advise", node_pub, "fee-policy", "set_single",
                "channel=1x1x1", "fee_ppm=120", "--relay", url, "--timeout", "2")  # fmt: skip
    assert late.returncode == EX_TEMPFAIL == 75
    assert late.stdout.splitlines()[1:] == [
        "no receipt yet (the command stays in the outbox and the node's queue)"
    ]
    assert late.stderr == "error: NO_RECEIPT: no receipt within 2 s\n"
    assert time.monotonic() - started < 20  # --timeout bounds the wait (a loaded CI: slack)
    as_json = hive(advisor_home, "--json", "advise", node_pub, "fee-policy", "set_single",
                   "channel=1x1x1", "fee_ppm=121", "--relay", url, "--timeout", "1.5")  # fmt: skip
    assert as_json.returncode == 75
    answer = json.loads(as_json.stdout)
    assert answer["receipt"] is None
    assert answer["error"] == {"code": "NO_RECEIPT", "message": "no receipt within 1.5 s"}


def test_a_bad_parameter_fails_at_once_without_connecting(tmp_path: Path) -> None:
    home = tmp_path / "a"
    new_agent(home)
    with socket.create_server(("127.0.0.1", 0)) as silent:  # a relay that never answers
        silent.setblocking(False)
        url = f"ws://127.0.0.1:{silent.getsockname()[1]}"
        started = time.monotonic()
        bad = hive(home, "advise", HEX, "fee-policy", "set_single", "channel=1x1x1",
                   "fee_ppm=-5", "--relay", url)  # fmt: skip
        took = time.monotonic() - started
        with pytest.raises(BlockingIOError):  # nothing even tried to connect
            silent.accept()
    assert bad.returncode == 65 and bad.stdout == ""
    assert bad.stderr == (
        "error: INVALID_PARAMS: hive:fee-policy/v1 set_single: fee_ppm: Input should be greater"
        " than or equal to 0\n"
    )
    # about 0.7 s on an idle machine (the interpreter starting); a connection attempt to the
    # silent relay would wait 5 s for its handshake
    assert took < 5, took
    assert Store(home / "agent.sqlite").outbox_counts() == {}


@pytest.mark.anyio
async def test_the_local_check_is_the_nodes_own(tmp_path: Path, relay_url: str) -> None:
    """Sent without the CLI's check, the node refuses the same parameter with the same code
    and sentence the CLI printed."""
    async with world(tmp_path, relay_url) as w:
        await w.wait_credential(w.grant())
        params = {"channel": "1x1x1", "fee_ppm": -5}
        _, got = await w.advisor.advise(w.node.me, "hive:fee-policy/v1", "set_single", params)
    assert got is not None and got.error is not None
    local = hive(tmp_path / "cli", "advise", HEX, "fee-policy", "set_single", "channel=1x1x1",
                 "fee_ppm=-5", "--relay", "ws://127.0.0.1:1")  # fmt: skip
    assert local.stderr == f"error: {got.error.code}: {got.error.message}\n"


def test_schemas_lists_every_action(tmp_path: Path) -> None:
    listed = hive(tmp_path, "--json", "schemas")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)["schemas"]
    assert [(r["schema"], r["action"]) for r in rows] == [
        (s.schema, s.name) for s in schemas.CATALOGUE
    ]
    circular = next(r for r in rows if r["action"] == "circular")
    assert circular["danger"] == {"min": 3, "max": 5} and circular["tier"] == "advanced"
    text = hive(tmp_path, "schemas", "fee-policy").stdout
    assert text == (
        "action                 tier      danger  parameters ([optional])\n"
        "fee-policy/set_single  standard  2       channel fee_ppm [base_msat]\n"
        "fee-policy/set_anchor  standard  2       channel target_fee_ppm [confidence] [ttl_hours]"
        " [reason]\n"
        "fee-policy/set_bulk    advanced  5       fee_ppm base_msat\n"
    )


def test_schemas_shows_one_action_with_its_parameters(tmp_path: Path) -> None:
    for form in (["fee-policy/set_single"], ["hive:fee-policy/v1", "set_single"]):
        shown = hive(tmp_path, "schemas", *form)
        assert shown.returncode == 0, shown.stderr
        assert shown.stdout == (
            "schema    hive:fee-policy/v1\n"
            "action    set_single\n"
            "tier      standard or above\n"
            "danger    2\n"
            "executed  yes\n"
            "touches   channel_policy\n"
            "\n"
            "parameter  type     required  default  rule\n"
            "channel    string   yes             -  matches ^[0-9]{1,10}x[0-9]{1,10}x[0-9]{1,5}$\n"
            "fee_ppm    integer  yes             -  0..100000\n"
            "base_msat  integer  no              -  0..100000000\n"
        )
    one = json.loads(hive(tmp_path, "--json", "schemas", "monitor/budget").stdout)
    assert one["parameters"]["properties"] == {} and one["danger"] == {"min": 1, "max": 1}


@pytest.mark.parametrize(
    ("which", "message"),
    [
        (["teleport"], "unknown schema 'teleport'; `hive-agent schemas` lists them"),
        (["fee-policy", "nope"], "unknown action 'nope' of hive:fee-policy/v1"),
    ],
)
def test_schemas_unknown(tmp_path: Path, which: list[str], message: str) -> None:
    shown = hive(tmp_path, "schemas", *which)
    assert (shown.returncode, shown.stderr) == (65, f"error: INVALID_PARAMS: {message}\n")


def test_outside_the_credential_fails_before_connecting(pair, tmp_path: Path) -> None:
    node, node_pub, advisor_home, url = pair
    stranger = tmp_path / "stranger"
    new_agent(stranger)
    with socket.create_server(("127.0.0.1", 0)) as silent:  # a relay that never answers
        silent.setblocking(False)
        dead = f"ws://127.0.0.1:{silent.getsockname()[1]}"
        outside = hive(advisor_home, "advise", node_pub, "monitor", "get_info", "--relay", dead)
        none = hive(stranger, "advise", node_pub, "fee-policy", "set_single", "channel=1x1x1",
                    "fee_ppm=5", "--relay", dead)  # fmt: skip
        with pytest.raises(BlockingIOError):  # neither tried to connect
            silent.accept()
    assert (outside.returncode, outside.stdout) == (65, "")
    assert outside.stderr == "error: RESTRICTED: the credential does not allow hive:monitor/v1\n"
    assert none.returncode == 65
    assert none.stderr == (
        f"error: UNAUTHORIZED: we hold no valid credential for node {node_pub[:16]}…\n"
    )


def test_waiting_for_the_operator_past_the_timeout_exits_75(pair) -> None:
    node, node_pub, advisor_home, url = pair
    advisor_pub = json.loads(hive(advisor_home, "--json", "keys", "show").stdout)["pubkey"]
    granted = hive(node.home, "credential", "grant", advisor_pub, "--tier", "advanced",
                   "--schema", "hive:rebalance/*", "--relay", url)  # fmt: skip
    assert granted.returncode == 0, granted.stderr
    assert hive(advisor_home, "run", "--until-idle", "--relay", url).returncode == 0
    chans = my_channels(node.home)[0]
    move = [f"from_channel={chans[0]['scid']}", f"to_channel={chans[1]['scid']}",
            "amount_sats=200000", "max_fee_ppm=500"]  # fmt: skip
    queued = hive(advisor_home, "advise", node_pub, "rebalance", "circular", *move,
                  "--relay", url, "--timeout", "20")  # fmt: skip
    assert queued.returncode == 0, (queued.stdout, queued.stderr)  # queued is an answer
    assert queued.stdout.splitlines()[1].startswith("queued")
    waited = hive(advisor_home, "advise", node_pub, "rebalance", "circular", *move,
                  "--wait", "--relay", url, "--timeout", "6")  # fmt: skip
    assert waited.returncode == 75, (waited.stdout, waited.stderr)
    assert waited.stdout.splitlines()[1].startswith("queued: ")
    assert waited.stderr == "error: NO_RECEIPT: no final receipt (still queued) within 6 s\n"


def test_credentials_approvals_and_receipts_read_as_tables(pair) -> None:
    """Text views: tables with local ISO times and keys as npub, never dict reprs or epochs."""
    node, node_pub, advisor_home, url = pair
    creds = hive(node.home, "credential", "list").stdout.splitlines()
    assert creds[0].split() == ["role", "credential", "tier", "advisor", "node", "valid", "until",
                                "state"]  # fmt: skip
    row = creds[1]
    assert re.search(r"npub1[0-9a-z]+ \([0-9a-f]{8}\)", row) and row.rstrip().endswith("active")
    assert re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d", row), row
    assert hive(node.home, "approvals", "list").stdout == "nothing waits for approval\n"
    scid = my_channels(node.home)[0][0]["scid"]
    done = hive(advisor_home, "advise", node_pub, "fee-policy", "set_single",
                f"channel={scid}", "fee_ppm=121", "--relay", url, "--timeout", "20")  # fmt: skip
    assert done.returncode == 0, done.stderr
    shown = hive(advisor_home, "receipts", "list").stdout.splitlines()
    assert shown[0].split() == ["seq", "command", "id", "status", "command", "error", "at"]
    last = shown[-1].split()
    assert last[2:5] == ["ok", "hive:fee-policy/v1", "set_single"] and last[5] == "-", shown


def test_a_ticket_whose_ecash_was_refused_is_not_named(pair) -> None:
    """Dishonest node: its ticket's proofs were never signed by the mint, and the advisor's
    agent refused them when it checked them at the mint.  `advise --ticket` would still have
    named it — the advisor working for made-up ecash.  Now it stops before anything is sent:
    TICKET_INVALID (exit 65), one line saying why."""
    import nostr_sdk as sdk

    from agent.store import escrow as erepo
    from tests.test_escrow_attacks import forged_ticket

    node, node_pub, advisor_home, url = pair
    scid, before = my_channels(node.home)[0][0]["scid"], my_channels(node.home)
    fake = forged_ticket(sdk.Keys.generate(), "cd" * 32, "http://127.0.0.1:1", "ef" * 16)
    fake = fake.model_copy(update={"node": node_pub, "refund_pubkey": node_pub})
    why = "part 0's proof 0 (8 sat) was not signed by the mint (its DLEQ proof fails)"
    store = Store(advisor_home / "agent.sqlite")
    queued = store.outbox_counts()
    with store.transaction(int(time.time())) as tx:  # as the advisor's agent left it
        erepo.save_ticket(tx, fake, "payee")
        erepo.set_checked(tx, fake.ticket_id, f"TICKET_INVALID: {why}")
    done = hive(advisor_home, "advise", node_pub, "fee-policy", "set_single", f"channel={scid}",
                "fee_ppm=130", "--ticket", fake.ticket_id, "--relay", url, "--timeout", "20")  # fmt: skip
    assert done.returncode == 65, (done.stdout, done.stderr)
    assert done.stdout == ""  # nothing was sent
    assert done.stderr == f"error: TICKET_INVALID: ticket {fake.ticket_id} does not pay: {why}\n"
    assert store.outbox_counts() == queued and my_channels(node.home) == before
