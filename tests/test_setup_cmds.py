"""`hive-agent init`, `doctor` and `status` as a new user runs them: real processes, a real
relay (with and without NIP-42 AUTH), the real Nutshell mint, the simulator's CLN socket and a
port nobody listens on; exact lines and exit codes."""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import anyio
import nostr_sdk as sdk
import pytest

from agent.advisory.policy import Mode, PolicyConfig, Preset
from agent.home_setup import DEFAULT_DM_RELAYS, DEFAULT_RELAYS, policy_for
from agent.nostr.client import RelayClient
from agent.nostr.local_relay import free_port
from agent.settings import RelaysConfig
from agent.store.database import code_versions
from events.relay_lists import build_dm_relays, build_relay_list
from tests.conftest import HIVE_AGENT, ROOT


def hive(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [HIVE_AGENT, "--home", str(home), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=90, check=False)


def npub_of(home: Path) -> str:
    return sdk.Keys.parse((home / "nostr.key").read_text().strip()).public_key().to_bech32()


def dead_relay() -> str:
    return f"ws://127.0.0.1:{free_port()}"  # free a moment ago: nobody listens


# --- init -------------------------------------------------------------------------------------


def test_init_in_a_fresh_home_then_again(tmp_path: Path) -> None:
    home = tmp_path / "fresh"
    first = hive(home, "init")
    assert first.returncode == 0, first.stderr
    npub = npub_of(home)
    assert first.stdout.splitlines() == [
        f"created   {home}/nostr.key  {npub}",
        f"created   {home}/relays.json  3 relays (defaults)",
        f"created   {home}/policy.json  preset moderate, mode autonomous, 0 mint(s)",
        f"next: hive-agent --home {home} doctor",
    ]
    assert home.stat().st_mode & 0o777 == 0o700
    for name in ("nostr.key", "relays.json", "policy.json"):
        assert (home / name).stat().st_mode & 0o777 == 0o600, name
    relays = RelaysConfig.load(home / "relays.json")
    example = json.loads((ROOT / "relays.example.json").read_text())
    assert relays.model_dump(mode="json") == example  # the defaults are the example's
    assert relays.read_urls == DEFAULT_RELAYS and relays.dm_relays == DEFAULT_DM_RELAYS
    assert PolicyConfig.load(home / "policy.json") == policy_for(Preset.MODERATE, [])
    before = {p.name: p.read_bytes() for p in home.iterdir()}

    again = hive(home, "init", "--preset", "conservative")
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines() == [
        f"kept      {home}/nostr.key  {npub}",
        f"kept      {home}/relays.json  exists; --force replaces it",
        f"kept      {home}/policy.json  exists; --force replaces it",
        f"next: hive-agent --home {home} doctor",
    ]
    assert {p.name: p.read_bytes() for p in home.iterdir()} == before


def test_init_force_replaces_the_files_but_never_the_key(tmp_path: Path, relay_url: str) -> None:
    assert hive(tmp_path, "init").returncode == 0
    key = (tmp_path / "nostr.key").read_bytes()
    forced = hive(
        tmp_path, "init", "--force", "--preset", "conservative", "--relay", relay_url,
        "--mint", "http://127.0.0.1:3338",
    )  # fmt: skip
    assert forced.returncode == 0, forced.stderr
    assert forced.stdout.splitlines()[:3] == [
        f"kept      {tmp_path}/nostr.key  {npub_of(tmp_path)}",
        f"replaced  {tmp_path}/relays.json  1 relay (--relay)",
        f"replaced  {tmp_path}/policy.json  preset conservative, mode operator, 1 mint(s)",
    ]
    assert (tmp_path / "nostr.key").read_bytes() == key
    assert RelaysConfig.load(tmp_path / "relays.json").read_urls == [relay_url]
    policy = PolicyConfig.load(tmp_path / "policy.json")
    assert (policy.preset, policy.mode, policy.mints) == (
        Preset.CONSERVATIVE, Mode.OPERATOR, ["http://127.0.0.1:3338"]
    )  # fmt: skip
    assert not list(tmp_path.glob(".*.new"))
    for name in ("relays.json", "policy.json"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("preset", list(Preset))
def test_every_preset_is_a_valid_policy(tmp_path: Path, preset: Preset) -> None:
    result = hive(tmp_path, "--json", "init", "--preset", preset.value)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["files"][2] == {
        "action": "created",
        "detail": f"preset {preset.value}, mode {policy_for(preset, []).mode.value}, 0 mint(s)",
        "file": str(tmp_path / "policy.json"),
    }
    assert PolicyConfig.load(tmp_path / "policy.json").preset == preset


def test_init_with_an_existing_key_file(tmp_path: Path) -> None:
    source = tmp_path / "old.key"
    keys = sdk.Keys.generate()
    source.write_text(keys.secret_key().to_hex() + "\n")
    source.chmod(0o600)
    home = tmp_path / "home"
    result = hive(home, "init", "--key", str(source))
    assert result.returncode == 0, result.stderr
    npub = keys.public_key().to_bech32()
    assert result.stdout.splitlines()[0] == f"created   {home}/nostr.key  {npub} (from {source})"
    assert npub_of(home) == npub and (home / "nostr.key").stat().st_mode & 0o777 == 0o600
    assert hive(home, "init", "--key", str(source)).stdout.splitlines()[0] == (
        f"kept      {home}/nostr.key  {npub}"
    )  # the same key: nothing to do
    other = tmp_path / "other.key"
    other.write_text(sdk.Keys.generate().secret_key().to_hex() + "\n")
    other.chmod(0o600)
    clash = hive(home, "init", "--key", str(other))
    assert clash.returncode == 73 and clash.stderr == (
        f"error: KEY_EXISTS: {home}/nostr.key holds another key; refusing to overwrite a key\n"
    )
    assert npub_of(home) == npub
    source.chmod(0o644)
    refused = hive(tmp_path / "third", "init", "--key", str(source))
    assert refused.returncode == 77 and refused.stderr.startswith("error: KEY_INSECURE: ")


async def _publish_lists(keys: sdk.Keys, url: str, listed: list[str], inbox: list[str]) -> None:
    now = int(time.time())
    async with RelayClient([url]) as client:
        for event in (
            build_relay_list(keys, listed, listed[:1], created_at=now),
            build_dm_relays(keys, inbox, created_at=now),
        ):
            assert (await client.publish(event)).accepted


@pytest.mark.anyio
async def test_init_from_your_published_relay_list(tmp_path: Path, relay_url: str) -> None:
    home = tmp_path / "home"
    created = await anyio.run_process([HIVE_AGENT, "--home", str(home), "keys", "new"])
    assert created.returncode == 0
    keys = sdk.Keys.parse((home / "nostr.key").read_text().strip())
    listed = ["wss://read.example", "wss://both.example"]
    await _publish_lists(keys, relay_url, listed, ["wss://inbox.example"])
    cmd = [HIVE_AGENT, "--home", str(home), "init", "--from-nostr", "--relay", relay_url]
    result = await anyio.run_process(cmd, check=False)
    out = result.stdout.decode()
    assert result.returncode == 0, result.stderr
    assert out.splitlines()[1] == (
        f"created   {home}/relays.json  2 relays (your relay list (kind 10002) from {relay_url})"
    )
    config = RelaysConfig.load(home / "relays.json")
    assert config.read_urls == listed and config.write_urls == ["wss://read.example"]
    assert config.dm_relays == ["wss://inbox.example"]


def test_init_from_nostr_without_a_published_list(tmp_path: Path, relay_url: str) -> None:
    assert hive(tmp_path, "keys", "new").returncode == 0
    result = hive(tmp_path, "init", "--from-nostr", "--relay", relay_url)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[1] == (
        f"created   {tmp_path}/relays.json  1 relay (--relay; no relay list of yours "
        f"(kind 10002) on {relay_url})"
    )


# --- doctor -----------------------------------------------------------------------------------

ISO = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d"
CLOCK_OK = re.compile(r"^ok    clock: [+-]\d s against mint (\S+) \(the largest of 1\)$")


def test_doctor_against_real_relays_a_real_mint_and_a_dead_port(
    tmp_path: Path, relays, mint_url: str
) -> None:
    open_url, auth_url, dead = relays().start(), relays(auth=True).start(), dead_relay()
    init = hive(tmp_path, "init", "--relay", open_url, "--relay", auth_url, "--mint", mint_url)
    assert init.returncode == 0, init.stderr
    healthy = hive(tmp_path, "doctor", "--timeout", "3")
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    lines = healthy.stdout.splitlines()
    assert CLOCK_OK.match(lines[5]) and CLOCK_OK.match(lines[5]).group(1) == mint_url
    assert lines[7] == (
        f"ok    mint {mint_url}: Cashu mint (Nutshell/0.20.2); NUTs 4, 5, 7, 8, 9, 10, 11, 12, "
        "14, 17, 20, 29; escrow's 7, 10, 11, 14 all supported"
    )
    assert [*lines[:5], lines[6], *lines[8:]] == [
        f"ok    home: {tmp_path} (mode 0700)",
        f"ok    key: {tmp_path}/nostr.key (mode 0600), {npub_of(tmp_path)}",
        "ok    relays.json: 2 relays (2 read, 2 write)",
        f"ok    relay {open_url}: connected; no AUTH asked",
        f"ok    relay {auth_url}: connected; asks NIP-42 AUTH, ours accepted",
        "ok    policy.json: preset moderate, mode autonomous, 1 mint",
        "skip  cln: not configured (--cln-rpc names lightningd's RPC socket)",
        "skip  store: no store yet (the first command that needs one creates it)",
        "8 ok, 0 warn, 0 fail, 2 skip (exit 0)",
    ]
    config = json.loads((tmp_path / "relays.json").read_text())
    config["relays"].append({"url": dead, "read": True, "write": True})
    (tmp_path / "relays.json").write_text(json.dumps(config))
    broken = hive(tmp_path, "--json", "doctor", "--timeout", "3")
    assert broken.returncode == 69
    report = json.loads(broken.stdout)
    assert report["exit_code"] == 69
    assert report["checks"][5] == {
        "name": f"relay {dead}",
        "status": "fail",
        "detail": "unreachable: connection refused",
    }
    assert [c["status"] for c in report["checks"]].count("fail") == 1


def test_doctor_on_a_home_that_is_not_set_up(tmp_path: Path) -> None:
    home = tmp_path / "nothing"
    result = hive(home, "doctor")
    assert result.returncode == 78
    assert result.stdout.splitlines() == [
        f"fail  home: {home} does not exist; run `hive-agent init`",
        f"fail  key: no key file {home}/nostr.key; run `hive-agent init`",
        f"fail  relays.json: no {home}/relays.json; run `hive-agent init`",
        "skip  clock: no relay or mint sent its time (HTTP Date)",
        "ok    policy.json: no policy.json, defaults: preset moderate, mode autonomous, 0 mints",
        "skip  mints: none configured (policy.json mints)",
        "skip  cln: not configured (--cln-rpc names lightningd's RPC socket)",
        "skip  store: no store yet (the first command that needs one creates it)",
        "1 ok, 0 warn, 3 fail, 4 skip (exit 78)",
    ]


def test_doctor_refuses_a_readable_key_and_an_open_home(
    tmp_path: Path, relay_url: str, relays
) -> None:
    auth_url = relays(auth=True).start()
    assert hive(tmp_path, "init", "--relay", relay_url, "--relay", auth_url).returncode == 0
    (tmp_path / "nostr.key").chmod(0o644)
    tmp_path.chmod(0o777)
    try:
        result = hive(tmp_path, "doctor")
    finally:
        tmp_path.chmod(0o700)
    assert result.returncode == 78
    lines = result.stdout.splitlines()
    assert lines[0] == f"fail  home: {tmp_path} is writable by every user (mode 0777); chmod 700 it"
    assert lines[1] == (
        f"fail  key: KEY_INSECURE: {tmp_path}/nostr.key has mode 0644, so other users can read "
        f"the secret key; run `chmod 600 {tmp_path}/nostr.key`"
    )
    # without a usable key the relays are still checked; AUTH cannot be answered
    assert lines[3] == f"ok    relay {relay_url}: connected; no AUTH asked"
    assert (
        lines[4]
        == f"warn  relay {auth_url}: connected; asks NIP-42 AUTH, and there is no key to answer with"
    )


def test_doctor_store_schema(tmp_path: Path, relay_url: str) -> None:
    assert hive(tmp_path, "init", "--relay", relay_url).returncode == 0
    assert hive(tmp_path, "status").returncode == 0  # creates the store
    shown = ", ".join(f"{n} {v}" for n, v in code_versions().items())
    result = hive(tmp_path, "doctor")
    assert result.returncode == 0, result.stdout
    assert result.stdout.splitlines()[-2] == f"ok    store: schema current ({shown})"


@pytest.mark.anyio
async def test_doctor_checks_lightningd_and_makesecret(tmp_path: Path, relay_url: str) -> None:
    from agent.node.sim import Network
    from agent.node.sim_api import SimLightningd
    from agent.node.sim_rpc import SimRpcServer, short_socket_dir

    net = Network(seed=3)
    me = net.add_node("alice", 1_000_000)
    path = short_socket_dir() / "lightning-rpc"
    home = str(tmp_path)
    assert await anyio.run_process([HIVE_AGENT, "--home", home, "init", "--relay", relay_url])
    async with SimRpcServer(SimLightningd(net, me), path) as server:
        cmd = [HIVE_AGENT, "--home", home, "doctor", "--cln-rpc", str(path)]
        result = await anyio.run_process(cmd, check=False)
        assert server.calls == 2  # getinfo, makesecret
    lines = result.stdout.decode().splitlines()
    assert result.returncode == 0, lines
    assert f"ok    cln {path}: node {me} (alice); makesecret works" in lines
    gone = await anyio.run_process(cmd, check=False)
    assert gone.returncode == 69
    assert f"fail  cln {path}: unreachable: [Errno 111] Connection refused" in (
        gone.stdout.decode().splitlines()
    )


# --- status -----------------------------------------------------------------------------------


def test_status_says_whether_the_agent_runs(tmp_path: Path, relay_url: str) -> None:
    assert hive(tmp_path, "init", "--relay", relay_url).returncode == 0
    assert hive(tmp_path, "status").stdout == "agent     (never ran on this home)\n"
    cmd = [HIVE_AGENT, "--home", str(tmp_path), "run", "--seconds", "30"]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) as agent:
        assert agent.stdout is not None and "running" in agent.stdout.readline()
        time.sleep(1.5)  # a snapshot (every second)
        live = hive(tmp_path, "status").stdout.splitlines()
        agent.terminate()
        assert agent.wait(timeout=30) == 0
    assert live[1] == f"process   running (pid {agent.pid})"
    assert re.match(rf"^{re.escape(relay_url)} +connected ", live[5]), live
    stopped = hive(tmp_path, "status").stdout.splitlines()
    pub = sdk.Keys.parse((tmp_path / "nostr.key").read_text().strip()).public_key()
    assert stopped[0] == f"agent     {pub.to_hex()} ({pub.to_bech32()})"
    assert stopped[1] == f"process   not running (last pid {agent.pid})"
    assert re.match(r"^snapshot  \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d \(\d+ s ago\)$",
                    stopped[2])  # fmt: skip
    assert stopped[4].split() == ["relay", "status", "since", "acks", "received", "last", "error"]
    assert re.match(rf"^{re.escape(relay_url)} +was connected +\d{{4}}-", stopped[5]), stopped
    assert "{" not in "\n".join(stopped)  # no dict reprs
    report = json.loads(hive(tmp_path, "--json", "status").stdout)
    assert report["process"] == {"pid": agent.pid, "running": False}
    assert report["snapshot_age_s"] >= 0 and isinstance(report["status_at"], int)


# --- escrow's text views ----------------------------------------------------------------------


def test_escrow_text_views_are_tables(tmp_path: Path, relay_url: str, mint_url: str) -> None:
    node, advisor = tmp_path / "node", tmp_path / "advisor"
    for home in (node, advisor):
        assert hive(home, "init", "--relay", relay_url, "--mint", mint_url).returncode == 0
    advisor_pub = sdk.Keys.parse((advisor / "nostr.key").read_text().strip()).public_key()
    grant = hive(node, "--json", "credential", "grant", advisor_pub.to_hex(), "--tier",
                 "advanced", "--schema", "hive:fee-policy/*", "--relay", relay_url)  # fmt: skip
    assert grant.returncode == 0, grant.stderr
    assert hive(node, "escrow", "topup", "--amount", "300").returncode == 0
    assert hive(node, "escrow", "balance").stdout.splitlines() == [
        "mint                    sat",
        f"{mint_url}  300",
    ]
    funded = hive(node, "--json", "escrow", "fund", advisor_pub.to_hex(), "--credential",
                  json.loads(grant.stdout)["credential_id"], "--amount", "100", "--schema",
                  "hive:fee-policy/*", "--max-danger", "5", "--relay", relay_url)  # fmt: skip
    assert funded.returncode == 0, funded.stderr
    ticket = json.loads(funded.stdout)["ticket_id"]
    assert hive(node, "escrow", "list").stdout.splitlines() == [
        f"role    ticket{' ' * (len(ticket) - 6)}  type    sat  parts     ecash",
        f"funder  {ticket}  single  100  0:locked",  # (the payee checks the ecash)
    ]
    shown = hive(node, "escrow", "show", ticket).stdout.splitlines()
    assert shown[:2] == [f"ticket      {ticket}", "role        funder"]
    assert shown[3:5] == ["amount      100 sat", f"mint        {mint_url}"]
    assert shown[6] == f"advisor     {advisor_pub.to_hex()}"
    assert re.match(rf"^created     {ISO} \(\d+ s ago\)$", shown[8]), shown
    assert shown[10] == "ecash       ours (we locked it)"
    assert shown[12].split() == ["part", "sat", "state", "locktime", "updated", "note"]
    assert re.match(rf"^   0  100  locked  {ISO}  {ISO} \(\d+ s ago\) +-$", shown[13]), shown
    status = hive(node, "escrow", "status", ticket).stdout.splitlines()
    assert status == [
        "part  sat  states   preimage revealed",
        "   0  100  unspent                  -",
    ]


# --- market's text views ----------------------------------------------------------------------


def test_market_text_views_are_tables(tmp_path: Path, relay_url: str) -> None:
    import secrets

    seller, buyer = tmp_path / "seller", tmp_path / "buyer"
    for home in (seller, buyer):
        assert hive(home, "init", "--relay", relay_url).returncode == 0
    lid, cap = f"views-{secrets.token_hex(4)}", f"cap{secrets.token_hex(3)}"
    published = hive(seller, "market", "publish", "--relay", relay_url, "--id", lid, "--service",
                     "advisor", "--title", "Views desk", "--summary", "tables", "--price", "9000",
                     "--frequency", "month", "--pricing-model", "per-action", "--primary", cap)  # fmt: skip
    assert published.returncode == 0, published.stderr
    lines = published.stdout.splitlines()
    fields = dict(line.split(None, 1) for line in lines)
    assert list(fields) == ["event_id", "nevent", "address", "naddr"], lines
    assert re.match(r"^[0-9a-f]{64}$", fields["event_id"])
    seller_pub = sdk.Keys.parse((seller / "nostr.key").read_text().strip()).public_key().to_hex()
    assert fields["address"] == f"30402:{seller_pub}:{lid}"
    assert fields["naddr"].startswith("naddr1") and fields["nevent"].startswith("nevent1")
    browse = hive(buyer, "market", "browse", "--relay", relay_url, "--need", cap, "--explain")
    shown = browse.stdout.splitlines()
    assert shown[0].split() == ["#", "score", "price", "rep", "title", "provider"]
    assert re.match(rf"^1  \d\.\d{{3}}  9,000/month  \d+ \w+ +Views desk  {seller_pub[:12]}…$",
                    shown[1]), shown  # fmt: skip
    assert shown[2] == "" and shown[3].startswith(" 1  ") and "specialisation" in shown[3]
    refreshed = hive(seller, "market", "refresh", "--relay", relay_url)
    assert refreshed.stdout == "refreshed  none\n"


def test_doctor_clock_thresholds() -> None:
    from agent.doctor import Clock, Status, check_clock, exit_status

    now = time.time()

    def judged(skew: float) -> tuple[Status, str]:
        check = check_clock(Clock([("relay wss://r.example", now - skew, now)]))
        return check.status, check.detail

    assert judged(0.4) == (Status.OK, "+0 s against relay wss://r.example (the largest of 1)")
    assert judged(-61.5) == (
        Status.WARN,
        "-61 s against relay wss://r.example (the largest of 1): commands allow ±300 s; check NTP",
    )
    status, detail = judged(301.2)
    assert status is Status.FAIL and detail.endswith("commands allow ±300 s; set the clock (NTP)")
    assert exit_status([check_clock(Clock([("mint m", now - 400, now)]))]) == 78


def test_doctor_on_an_older_store(tmp_path: Path, relay_url: str) -> None:
    import sqlite3

    assert hive(tmp_path, "init", "--relay", relay_url).returncode == 0
    assert hive(tmp_path, "status").returncode == 0  # creates the store
    known = code_versions()
    with sqlite3.connect(tmp_path / "agent.sqlite") as conn:
        conn.execute("UPDATE schema_versions SET version = 1 WHERE slice = 'fleet'")
    conn.close()
    shown = ", ".join(f"{n} {1 if n == 'fleet' else v}" for n, v in known.items())
    want = ", ".join(f"{n} {v}" for n, v in known.items())
    result = hive(tmp_path, "doctor")
    assert result.returncode == 0
    assert result.stdout.splitlines()[-2] == (
        f"warn  store: schema {shown}, this hive-agent has {want}: migrated (with a backup) "
        "when the agent next opens it"
    )
    assert result.stdout.splitlines()[-1] == "5 ok, 1 warn, 0 fail, 3 skip (exit 0)"


def test_notes_are_a_table_with_local_times(tmp_path: Path, relay_url: str) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    for home in (a, b):
        assert hive(home, "init", "--relay", relay_url).returncode == 0
    assert hive(b, "notes").stdout == "no notes\n"
    b_pub = sdk.Keys.parse((b / "nostr.key").read_text().strip()).public_key().to_hex()
    a_pub = sdk.Keys.parse((a / "nostr.key").read_text().strip()).public_key().to_hex()
    assert hive(a, "note", "send", b_pub, "tables please").returncode == 0
    assert hive(b, "run", "--until-idle", "--timeout", "20").returncode == 0
    shown = hive(b, "notes").stdout.splitlines()
    assert shown[0].split() == ["received", "from", "text"]
    assert re.match(rf"^{ISO}  {a_pub[:16]}…  tables please$", shown[1]), shown
