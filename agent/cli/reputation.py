"""`hive-agent rep …`: reputation credentials from the command line — issue one about someone,
show someone's aggregate, verify a credential event, revoke one of ours."""

from __future__ import annotations

import argparse
from typing import Any

from agent.cli import dealviews as view
from agent.cli.apps import AppFactory
from agent.cli.common import Bind, Emit
from agent.cli.deals import answer
from agent.cli.market import DAY, validated
from agent.cli.types import days, pubkey
from agent.clock import SystemClock
from agent.config_files import parse_user_json, read_user_file
from agent.keys import load_key_file
from agent.market.service import Market
from agent.settings import Settings
from events import listing, reputation
from events.base import parse_event
from events.errors import InvalidParams


def _metrics(args: argparse.Namespace) -> dict[str, float]:
    metrics: dict[str, float] = {}
    for pair in args.metric or []:
        name, _, value = pair.partition("=")
        try:
            metrics[name] = float(value)
        except ValueError:
            raise InvalidParams(f"--metric {pair!r}: expected name=number") from None
    return metrics


def _reputation_credential(
    args: argparse.Namespace, settings: Settings, evidence: Any
) -> reputation.ReputationCredential:
    """The credential `rep issue` publishes, checked before connecting to anything."""
    end = SystemClock().now()
    metrics = _metrics(args)
    me = load_key_file(settings.key_file).public_key().to_hex()
    return validated(
        lambda: reputation.ReputationCredential(
            issuer=listing.did(me),
            validFrom=reputation.iso(end),
            credentialSubject=reputation.Subject(
                id=listing.did(args.subject),
                domain=args.domain,
                period=reputation.Period(
                    start=reputation.iso(end - args.period_days * DAY),
                    end=reputation.iso(end),
                ),
                metrics=metrics,
                outcome=args.outcome,
                evidence=evidence,
            ),
        )
    )


def cmd_rep_issue(
    args: argparse.Namespace, settings: Settings, emit: Emit, make: AppFactory
) -> int:
    evidence = (
        parse_user_json(read_user_file(args.evidence_file, "--evidence-file"), "--evidence-file")
        if args.evidence_file
        else []
    )
    cred = _reputation_credential(args, settings, evidence)

    async def job(market: Market) -> dict[str, Any]:
        event = await market.issue_credential(cred)
        return {
            "event_id": event.id,
            "credential_id": cred.credential_id,
            "score": round(reputation.score(cred.credentialSubject), 2),
        }

    return answer(args, settings, emit, make, job, view.rep_issued)


def cmd_rep_show(args: argparse.Namespace, settings: Settings, emit: Emit, make: AppFactory) -> int:
    async def job(market: Market) -> dict[str, Any]:
        agg = await market.reputation_of(args.pubkey)
        return {
            "subject": agg.subject,
            "score": round(agg.score, 2),
            "tier": agg.tier,
            "credentials": [p.__dict__ | {"weight": round(p.weight, 6)} for p in agg.parts],
        }

    return answer(args, settings, emit, make, job, view.rep_show)


def cmd_rep_revoke(
    args: argparse.Namespace, settings: Settings, emit: Emit, make: AppFactory
) -> int:
    async def job(market: Market) -> dict[str, Any]:
        return {
            "revoked": args.credential_id,
            "event_id": (await market.revoke_credential(args.credential_id)).id,
        }

    return answer(args, settings, emit, make, job, view.rep_revoked)


def cmd_rep_verify(args: argparse.Namespace, settings: Settings, emit: Emit) -> int:
    """Checks a credential event from a file (or stdin); connects to nothing."""
    raw = read_user_file(args.file, "the credential file")
    cred = reputation.parse(parse_event(raw), now=SystemClock().now()).payload
    value = reputation.score(cred.credentialSubject)
    result = {
        "valid": True,
        "issuer": cred.issuer,
        "subject": cred.credentialSubject.id,
        "score": round(value, 2),
        "tier": reputation.tier(value),
        "verified_evidence": reputation.verified_evidence(cred),
    }
    emit(result, view.rep_verified(result))
    return 0


def register(sub: Any, relay_opt: argparse.ArgumentParser, bind: Bind) -> None:
    rep = sub.add_parser("rep", help="reputation credentials").add_subparsers(
        required=True, metavar="ACTION"
    )
    issue = rep.add_parser("issue", parents=[relay_opt], help="issue a credential about SUBJECT")
    issue.add_argument("subject", type=pubkey, help="hex, npub or nprofile")
    issue.add_argument("--domain", choices=[d.value for d in reputation.Domain], required=True)
    issue.add_argument("--period-days", type=days, default=30)
    issue.add_argument("--metric", action="append", help="name=value (repeatable)")
    issue.add_argument(
        "--outcome", choices=[o.value for o in reputation.Outcome], default="neutral"
    )
    issue.add_argument("--evidence-file", help="JSON list of evidence items")
    issue.set_defaults(func=bind(cmd_rep_issue))
    show = rep.add_parser("show", parents=[relay_opt], help="aggregate reputation of PUBKEY")
    show.add_argument("pubkey", type=pubkey)
    show.set_defaults(func=bind(cmd_rep_show))
    verify = rep.add_parser("verify", help="verify a credential event (file or -)")
    verify.add_argument("file")
    verify.set_defaults(func=cmd_rep_verify)
    revoke = rep.add_parser("revoke", parents=[relay_opt], help="revoke our credential")
    revoke.add_argument("credential_id")
    revoke.set_defaults(func=bind(cmd_rep_revoke))
