"""Every Nostr event kind the project reads or writes.

Standard kinds keep their NIP numbers.  The project's own kinds live in two blocks that the
NIPs README kind table (checked 2026-11) and the registry-of-kinds leave free:

* 36380–36389, addressable (replaceable by author + kind + `d`): public, filterable records.
  Chosen away from 3838x, where 38383 is NIP-69's peer-to-peer orders and the upstream
  cl-hive draft collided with it.
* 4380–4389, regular: the kinds of *rumors*, which only ever travel sealed inside NIP-59 gift
  wraps, so relays never see them; they still avoid registered numbers so a client that
  unwraps one cannot mistake it for something else.

`tests/test_kinds.py` checks these against `REGISTERED_ELSEWHERE`.
"""

from __future__ import annotations

from enum import IntEnum


class Kind(IntEnum):
    # --- standard kinds we use ----------------------------------------------------------
    METADATA = 0  # NIP-01 user metadata: the agent's profile (name, about, NIP-24 bot)
    DELETION = 5  # NIP-09 deletion request (withdrawing a listing)
    SEAL = 13  # NIP-59 seal: the rumor encrypted to the recipient, signed by the real author
    DIRECT_MESSAGE = 14  # NIP-17 chat message rumor (plain-text commands from any DM client)
    GIFT_WRAP = 1059  # NIP-59 gift wrap: the seal encrypted under a one-time key
    LABEL = 1985  # NIP-32 label (reputation summaries readable by generic clients)
    RELAY_LIST = 10002  # NIP-65 relay list metadata (read/write relays)
    DM_RELAYS = 10050  # NIP-17 relays where a key receives DMs
    AUTH = 22242  # NIP-42 client authentication
    CLASSIFIED_LISTING = 30402  # NIP-99 classified listing: advisor and liquidity offers
    USER_ASSERTION = 30382  # NIP-85 trusted assertion about a pubkey (`rank`)
    HANDLER_INFO = 31990  # NIP-89 handler information: the kinds a hive agent handles

    # --- hive public records (addressable, 36380–36389) ----------------------------------
    AGENT_INFO = 36380  # an agent's self-description: role, version, capabilities, relays
    RFP = 36381  # request for proposals (want-to-buy) from an operator
    HEARTBEAT = 36382  # per-contract liveness heartbeat
    REPUTATION = 36383  # signed reputation credential (W3C-VC-shaped content)
    REVOCATION = 36384  # revocation of a management credential (carries only a hash)
    NODE_BINDING = 36385  # Nostr key <-> Lightning node id binding (CLN signmessage inside)
    APPROVAL = 36386  # m-of-n approval of a dangerous command by an approver key

    # --- hive private rumors (only inside gift wraps, 4380–4389) -------------------------
    NOTE = 4380  # free-form private note between agents (demo, operator notices)
    CREDENTIAL_GRANT = 4381  # management credential granted by an operator to an advisor
    COMMAND = 4382  # advisor command to a node
    RECEIPT = 4383  # node's signed receipt (result or error) for a command
    CONTRACT_OFFER = 4384  # contract offer
    CONTRACT_ACCEPT = 4385  # contract acceptance / countersignature
    BID = 4386  # sealed bid answering an RFP
    ESCROW_TICKET = 4387  # Cashu escrow ticket riding with a contract or a command
    ESCROW_RELEASE = 4388  # node-signed release of an escrow preimage (performance bonus)


HIVE_ADDRESSABLE = range(36380, 36390)
HIVE_RUMORS = range(4380, 4390)

# Kinds that the NIPs registry or well-known deployed software assign to something else,
# which this project must never use for its own purposes (DESIGN.md §4, ANCHORS.md §10).
REGISTERED_ELSEWHERE: frozenset[int] = frozenset(
    {
        *range(0, 100),
        443, 444, 445, 818, 1018, 1021, 1022, 1040, 1063, 1068, 1111, 1222, 1234, 1244,
        1059, 1311, 1337, 1617, 1618, 1619, 1621, 1622, 1630, 1631, 1632, 1633, 1971, 1984, 1985,
        1986, 1987, 2003, 2004, 2022, 4550, *range(5000, 7001), 7374, 7375, 7376, 7516,
        7517, 8000, 8001, *range(9000, 9031), 9041, 9321, 9467, 9734, 9735, 9802,
        10000, 10001, 10002, 10003, 10004, 10005, 10006, 10007, 10008, 10009, 10011,
        10012, 10013, 10015, 10019, 10020, 10030, 10050, 10051, 10054, 10063, 10064, 10096,
        10154, 10166, 10312, 13194, 13534, 15128, 17375, 22242, *range(23194, 23198), 24133,
        24242, 27235,
        28934, 28935, 28936, 30000, 30002, 30003, 30004, 30005, 30006, 30007, 30008,
        30009, 30015, 30017, 30018, 30019, 30020, 30023, 30024, 30030, 30040, 30041,
        30063, 30078, 30166, 30267, 30311, 30312, 30313, 30315, 30382, 30383, 30384,
        30385, 30402, 30403, 30617, 30618, 30818, 30819, 31234, 31922, 31923, 31924,
        31925, 31989, 31990, 32267, 34128, 34235, 34236, 34550, 35128, 37516, 38000,
        38172, 38173, 38383, *range(39000, 39010), 39078, 39079, 39080, 39089, 39092,
        39701, 39735,
    }
)  # fmt: skip

# Kinds this project uses with their standard meaning (so they are allowed to be registered).
STANDARD_USES: frozenset[Kind] = frozenset(
    {
        Kind.METADATA,
        Kind.DELETION,
        Kind.SEAL,
        Kind.DIRECT_MESSAGE,
        Kind.GIFT_WRAP,
        Kind.LABEL,
        Kind.RELAY_LIST,
        Kind.DM_RELAYS,
        Kind.AUTH,
        Kind.CLASSIFIED_LISTING,
        Kind.USER_ASSERTION,
        Kind.HANDLER_INFO,
    }
)


def is_addressable(kind: int) -> bool:
    """True for NIP-01 addressable kinds, which relays replace by author, kind and `d` tag."""
    return 30000 <= kind < 40000


def is_replaceable(kind: int) -> bool:
    """True for NIP-01 replaceable kinds (one event per author and kind)."""
    return kind in (0, 3) or 10000 <= kind < 20000
