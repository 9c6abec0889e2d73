"""Errors raised by the runtime.

The root and the wire-level families live in `events.errors`, so the same codes reach advisors
and relays; this module adds the families that only the runtime raises.
Each has a stable `code` and an `exit_code` (sysexits.h) the CLI returns.
"""

from __future__ import annotations

from typing import ClassVar

from events.errors import HiveError

# sysexits.h values: a script calling `hive-agent` can tell these apart.
EX_USAGE = 64
EX_DATAERR = 65
EX_NOINPUT = 66
EX_UNAVAILABLE = 69
EX_SOFTWARE = 70
EX_CANTCREAT = 73
EX_IOERR = 74
EX_TEMPFAIL = 75
EX_NOPERM = 77
EX_CONFIG = 78


class AgentError(HiveError):
    """Raised by the runtime; the CLI exits with `exit_code`."""

    code = "AGENT_ERROR"
    detail = "the agent could not do what was asked"
    exit_code: ClassVar[int] = EX_SOFTWARE


class KeyFileMissing(AgentError):
    """Raised when the agent's key file does not exist."""

    code = "KEY_MISSING"
    detail = "no key file; create one with `hive-agent keys new`"
    exit_code = EX_NOINPUT


class KeyFileExists(AgentError):
    """Raised when `keys new` would overwrite an existing key."""

    code = "KEY_EXISTS"
    detail = "a key file already exists; refusing to overwrite it"
    exit_code = EX_CANTCREAT


class KeyFileInsecure(AgentError):
    """Raised when the key file can be read by the group or by others."""

    code = "KEY_INSECURE"
    detail = "the key file is readable by other users"
    exit_code = EX_NOPERM


class KeyFileInvalid(AgentError):
    """Raised when the key file does not hold one valid secret key."""

    code = "KEY_INVALID"
    detail = "the key file does not contain a valid secret key"
    exit_code = EX_DATAERR


class ConfigInvalid(AgentError):
    """Raised when settings or relays.json cannot be used."""

    code = "CONFIG_INVALID"
    detail = "the configuration is invalid"
    exit_code = EX_CONFIG


class RelayUnavailable(AgentError):
    """Raised when no relay could be reached or a relay cannot be started."""

    code = "RELAY_UNAVAILABLE"
    detail = "no relay is reachable"
    exit_code = EX_UNAVAILABLE


class NodeUnavailable(AgentError):
    """Raised when the Lightning node cannot be reached, or its circuit breaker is open."""

    code = "NODE_UNAVAILABLE"
    detail = "the Lightning node is not reachable"
    exit_code = EX_UNAVAILABLE


class NodeRefused(AgentError):
    """Raised when the Lightning node answered a request with an error."""

    code = "NODE_REFUSED"
    detail = "the Lightning node refused the request"
    exit_code = EX_SOFTWARE


class PluginUnavailable(AgentError):
    """Raised when another plugin on the node (cl-revenue-ops, CLBOSS) does not answer in
    time, or its circuit breaker is open."""

    code = "PLUGIN_UNAVAILABLE"
    detail = "a plugin on the Lightning node is not answering"
    exit_code = EX_UNAVAILABLE


class PeerNotConnected(AgentError):
    """Raised when a custom message is sent to a peer that is not connected."""

    code = "PEER_NOT_CONNECTED"
    detail = "the peer is not connected"
    exit_code = EX_UNAVAILABLE


class UsageError(AgentError):
    """Raised when the command line itself is wrong (unknown option, bad value)."""

    code = "USAGE"
    detail = "the command line is not valid"
    exit_code = EX_USAGE


class InputMissing(AgentError):
    """Raised when a file named on the command line does not exist or cannot be read."""

    code = "INPUT_MISSING"
    detail = "an input file cannot be read"
    exit_code = EX_NOINPUT


class StoreCorrupt(AgentError):
    """Raised when the agent's SQLite store is damaged or is not a store at all."""

    code = "STORE_CORRUPT"
    detail = "the agent's store is damaged"
    exit_code = EX_DATAERR


class StoreBusy(AgentError):
    """Raised when another process holds the store's write lock for too long."""

    code = "STORE_BUSY"
    detail = "the agent's store is locked by another process"
    exit_code = EX_TEMPFAIL


class StoreTooNew(AgentError):
    """Raised when the store was written by a newer version of the agent."""

    code = "STORE_TOO_NEW"
    detail = "the store was created by a newer hive-agent"
    exit_code = EX_CONFIG


class HomeLocked(AgentError):
    """Raised when another agent process already runs on the same home directory."""

    code = "HOME_LOCKED"
    detail = "another agent is already running on this home directory"
    exit_code = EX_TEMPFAIL


class DiskError(AgentError):
    """Raised when the disk refuses a write (full, read-only, I/O error)."""

    code = "DISK_ERROR"
    detail = "the disk refused a write"
    exit_code = EX_IOERR


class CommandRefused(AgentError):
    """Raised when a node answered an advisor's command with an error receipt (refused by a
    check or the operator, or failed while running); the receipt's own code says which."""

    code = "COMMAND_REFUSED"
    detail = "the node refused the command"
    exit_code = EX_NOPERM


class NoReceipt(AgentError):
    """Raised when no receipt (or, with --wait, no final receipt) arrived within --timeout."""

    code = "NO_RECEIPT"
    detail = "no answer from the node in time"
    exit_code = EX_TEMPFAIL


# exit statuses of the wire-level errors (events/) that are not about bad data
WIRE_EXITS = {
    "MINT_UNAVAILABLE": EX_UNAVAILABLE,
    "RATE_LIMITED": EX_TEMPFAIL,
    "INTERNAL": EX_SOFTWARE,
    "NOT_IMPLEMENTED": EX_SOFTWARE,
}


def exit_code_of(error: HiveError) -> int:
    """The process exit status for `error`."""
    return getattr(error, "exit_code", WIRE_EXITS.get(error.code, EX_DATAERR))
