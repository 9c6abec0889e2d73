"""The JSON-RPC error codes of the `hive-*` methods: one stable number per hive error code.

Core Lightning's own codes (common/jsonrpc_errors.h) are -32602…-1 and 200–2000 (pay 2xx, fund
and splice 3xx, connect 4xx, bcli 5xx, hsm 800, invoice 9xx, offers 10xx, datastore 12xx,
signmessage 1301, del* 14xx, runes 1501–1503, recover 1600, createproof 1700, wait 2000); a
plugin's error reaches `lightning-cli` with the plugin's code unchanged.  The hive keeps to
3700–3799, which no CLN code uses, in blocks per family so a new code stays with its kin:

    3700–3719  NWC-style codes shared with advisors (3700 INTERNAL, also any unlisted code)
    3720–3739  wire and event errors (events/)
    3740–3749  escrow
    3750–3759  fleet
    3760–3799  the agent's runtime (agent/errors.py)

Numbers are never reused or renumbered; a new hive error code takes the next free number of
its block (tests/test_plugin.py checks every registered code has one, in the range).
"""

from __future__ import annotations

RANGE = range(3700, 3800)
INTERNAL = 3700

RPC_CODES: dict[str, int] = {
    # NWC-style, shared with advisors
    "INTERNAL": 3700, "UNAUTHORIZED": 3701, "RESTRICTED": 3702, "QUOTA_EXCEEDED": 3703,
    "RATE_LIMITED": 3704, "EXPIRED": 3705, "REPLAYED": 3706, "INVALID_PARAMS": 3707,
    "NOT_IMPLEMENTED": 3708, "FROM_FUTURE": 3709, "POW_TOO_LOW": 3710, "QUEUED": 3711,
    "REJECTED": 3712, "PAYMENT_FAILED": 3713, "INSUFFICIENT_BALANCE": 3714, "NOT_FOUND": 3715,
    "FAILSAFE_ONLY": 3716,
    # wire and events
    "INVALID_JSON": 3720, "INVALID_EVENT": 3721, "TOO_LARGE": 3722, "BAD_ID": 3723,
    "BAD_SIGNATURE": 3724, "WRONG_KIND": 3725, "MISSING_TAG": 3726, "INVALID_TAG": 3727,
    "INVALID_PAYLOAD": 3728, "INVALID_KEY": 3729, "NIP44_VERSION": 3730,
    "NIP44_MALFORMED": 3731, "DECRYPT_FAILED": 3732, "PLAINTEXT_LENGTH": 3733,
    "SEAL_MISMATCH": 3734, "WRONG_RECIPIENT": 3735,
    # escrow
    "TICKET_INVALID": 3740, "MINT_UNSUPPORTED": 3741, "MINT_NOT_ALLOWED": 3742,
    "MINT_UNAVAILABLE": 3743, "MINT_REFUSED": 3744,
    "TOKEN_INVALID": 3745, "TOKEN_SPENT": 3746, "INVOICE_UNPAID": 3747,
    # fleet
    "UNKNOWN_MESSAGE": 3750, "NOT_MEMBER": 3751, "BANNED": 3752, "INTENT_CONFLICT": 3753,
    "INVALID_TRANSITION": 3754, "SETTLEMENT_CONFLICT": 3755, "SETTLEMENT_MISMATCH": 3756,
    "BAD_PREIMAGE": 3757, "REPORT_CONFLICT": 3758, "REPORT_DISPUTED": 3759,
    # agent runtime
    "AGENT_ERROR": 3760, "KEY_MISSING": 3761, "KEY_EXISTS": 3762, "KEY_INSECURE": 3763,
    "KEY_INVALID": 3764, "CONFIG_INVALID": 3765, "RELAY_UNAVAILABLE": 3766,
    "NODE_UNAVAILABLE": 3767, "NODE_REFUSED": 3768, "PLUGIN_UNAVAILABLE": 3769,
    "PEER_NOT_CONNECTED": 3770, "USAGE": 3771, "INPUT_MISSING": 3772, "STORE_CORRUPT": 3773,
    "STORE_BUSY": 3774, "STORE_TOO_NEW": 3775, "HOME_LOCKED": 3776, "DISK_ERROR": 3777,
    "COMMAND_REFUSED": 3778, "NO_RECEIPT": 3779, "AMBIGUOUS_ID": 3780,
}  # fmt: skip


def rpc_code(code: str) -> int:
    """The JSON-RPC error number of hive error `code` (3700, INTERNAL's, for one not listed)."""
    return RPC_CODES.get(code, INTERNAL)
