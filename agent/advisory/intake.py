"""Intake of advisor commands (inside the inbound transaction): tie the command to its sender
and a credential this node granted, then small named checks.  Strangers get no reply (no
reflection, no chain); a credential holder gets a receipt for every refusal."""

from __future__ import annotations

import secrets
import shlex
from typing import Any

from agent.advisory import schemas
from agent.advisory.context import CLOCK_WINDOW_S, NodeContext
from agent.advisory.receipts import Receipts, is_dm, replied_rumor
from agent.store import Tx
from agent.store import advisory as repo
from agent.store.advisory import ReplyChannel
from events import command
from events.command import Command
from events.credential import Grant
from events.errors import (
    Expired,
    HiveError,
    InvalidParams,
    Replayed,
    Restricted,
    Unauthorized,
    WrongRecipient,
)
from events.nip59 import Unwrapped
from events.receipt import Status

Parsed = tuple[Command, Grant, schemas.ActionSpec, schemas.Params]
INTAKEN_MAX = 1024


class Intake:
    def __init__(self, ctx: NodeContext, receipts: Receipts) -> None:
        self.ctx = ctx
        self.receipts = receipts
        self._intaken: dict[str, Command] = {}  # commands parsed at intake, by id (bounded)

    def on_command(self, opened: Unwrapped, tx: Tx) -> None:
        cmd = command.FAMILY.parse(opened.rumor, now=self.ctx.now).payload
        self.intake(tx, cmd, opened.sender, ReplyChannel.RECEIPT)

    def intake(self, tx: Tx, cmd: Command, sender: str, reply: ReplyChannel | str) -> None:
        if cmd.node != self.ctx.me:
            raise WrongRecipient("the command is addressed to another node")
        grant = self.holder_credential(tx, cmd, sender)
        existing = repo.command_row(tx, cmd.command_id)
        if existing is not None and not _same_holder(existing, cmd, sender):
            # another advisor's command id: answering (even REPLAYED) would leak its receipt or
            # its existence; refused without a reply, counted by the pipeline
            raise Unauthorized("this command id belongs to a command another advisor sent")
        try:
            if existing is not None:
                self._again(tx, cmd, sender, existing)
                return
            self._check_fresh(cmd)
            self._check_nonce(tx, cmd)
            self._check_allowed(cmd, grant)
        except HiveError as error:
            tx.count_errors({error.code: 1})
            self.receipts.finish(tx, cmd, sender, reply, status=Status.ERROR, error=error)
            return
        origin = replied_rumor(reply)
        repo.insert_command(tx, cmd, sender, ReplyChannel.DM if is_dm(reply) else reply)
        if origin is not None:
            repo.save_dm_origin(tx, cmd.command_id, origin)
        self._intaken[cmd.command_id] = cmd
        while len(self._intaken) > INTAKEN_MAX:  # what is never processed here falls out
            self._intaken.pop(next(iter(self._intaken)))

    def holder_credential(self, tx: Tx, cmd: Command, sender: str) -> Grant:
        """The credential, if `sender` holds it and it is valid now; Unauthorized otherwise.

        Fails closed: a credential whose revocation state cannot be read is not honoured.
        """
        try:
            found = repo.credential(tx, cmd.credential_id)
        except Exception:  # noqa: BLE001 - cannot check revocation: refuse
            raise Unauthorized("the credential's revocation state cannot be checked") from None
        if found is None or found[2] != "granted" or found[0].credential.node != self.ctx.me:
            raise Unauthorized("no such credential was granted by this node")
        grant, revoked_at, _ = found
        cred = grant.credential
        if cred.advisor != sender:
            raise Unauthorized("the sender does not hold this credential")
        if revoked_at is not None:
            raise Unauthorized("the credential has been revoked")
        if not cred.valid_from <= self.ctx.now < cred.valid_until:
            raise Unauthorized("the credential is not valid at this time")
        return grant

    def _again(self, tx: Tx, cmd: Command, sender: str, existing: dict[str, Any]) -> None:
        """The same command id again: a duplicate delivery gets the receipt it already earned."""
        if existing["params_hash"] != cmd.params_hash:
            raise Replayed("this idempotency id was already used with other parameters")
        stored = repo.latest_receipt(tx, cmd.command_id)
        if stored is not None:
            self.receipts.deliver(tx, stored, sender, existing["reply"])

    def _check_fresh(self, cmd: Command) -> None:
        now = self.ctx.now
        if abs(cmd.issued_at - now) > CLOCK_WINDOW_S:
            raise Expired(
                f"the command was issued {cmd.issued_at - now:+d} s from the node's "
                f"clock (±{CLOCK_WINDOW_S} s allowed)"
            )
        if now >= cmd.expires_at:
            raise Expired("the command expired before it arrived")

    def _check_nonce(self, tx: Tx, cmd: Command) -> None:
        if not repo.claim_nonce(tx, cmd.credential_id, cmd.nonce):
            raise Replayed("this nonce was already used with this credential")

    def _check_allowed(self, cmd: Command, grant: Grant) -> None:
        spec = schemas.lookup(cmd.schema, cmd.action)
        if not grant.credential.allows(cmd.schema):
            raise Restricted(f"the credential does not allow {cmd.schema}")
        schemas.parse_params(spec, cmd.params)

    def parsed(self, row: dict[str, Any]) -> Parsed:
        """A stored command, its (unrevoked) credential, catalogue entry and parameters."""
        # parsed moments ago at intake (a frozen model, stored as exactly this JSON)
        cmd = self._intaken.pop(row["command_id"], None)
        if cmd is None:
            cmd = Command.model_validate_json(row["command"])
        found = repo.credential(self.ctx.agent.store, cmd.credential_id)
        if found is None or found[1] is not None:
            raise Unauthorized("the credential has been revoked")
        spec = schemas.lookup(cmd.schema, cmd.action)
        return cmd, found[0], spec, schemas.parse_params(spec, cmd.params)


def _same_holder(row: dict[str, Any], cmd: Command, sender: str) -> bool:
    """True if a stored command was sent by `sender` under the same credential as `cmd`."""
    stored = Command.model_validate_json(row["command"])
    return row["sender"] == sender and stored.credential_id == cmd.credential_id


def parse_text(text: str, grant: Grant, node: str, now: int) -> Command:
    """A plain-text DM command: `status`, or `<family|schema> <action> key=value …`."""
    try:
        words = shlex.split(text)
    except ValueError:
        raise InvalidParams("could not read the command text") from None
    if not words:
        raise InvalidParams("empty command")
    if words[0].lower() in ("status", "info"):
        words = ["monitor", "get_info"]
    if words[0].lower() == "budget":
        words = ["monitor", "budget"]
    if len(words) < 2:
        raise InvalidParams(
            "write: <schema> <action> key=value …  (e.g. fee-policy set_single channel=… fee_ppm=…)"
        )
    schema = words[0] if words[0].startswith("hive:") else f"hive:{words[0]}/v1"
    params = _text_params(words[2:])
    try:
        return Command(
            command_id=secrets.token_hex(16),
            node=node,
            credential_id=grant.credential.credential_id,
            schema=schema,
            action=words[1],
            params=params,
            nonce=secrets.token_hex(16),
            issued_at=now,
            expires_at=now + 300,
        )
    except Exception:  # noqa: BLE001 - any malformed text is the sender's mistake
        raise InvalidParams(f"not a command: {text[:80]!r}") from None


def _text_params(pairs: list[str]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise InvalidParams(f"expected key=value, got {pair!r}")
        params[key] = (
            int(value)
            if value.isascii() and value.lstrip("-").isdigit() and len(value) < 19
            else {"true": True, "false": False}.get(value, value)
        )
    return params
