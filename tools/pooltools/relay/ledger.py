"""Reciprocity accounting (docs/relay.md section 6): decayed byte counts, scores and tiers.

Every figure is this node's own observation: bytes it forwarded for a peer (`consumed`) and
bytes a peer forwarded for it (`contributed`). Reports from other nodes are never added here.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pooltools.common import peerfile
from pooltools.protocol.keys import decode_key

DEFAULT_PATH = Path("/var/lib/pool-relay/ledger.json")
FORMAT = 1
KINDS = ("contributed", "consumed")
MiB = 1 << 20


class LedgerError(ValueError):
    """The ledger file is not valid; the message names the problem."""


class Tier(enum.Enum):
    PRIORITY = 4.0
    BALANCED = 2.0
    LIGHT = 1.0
    DEPRIORITISED = 0.5  # served last, never blocked

    @property
    def weight(self) -> float:
        return self.value

    @classmethod
    def of(cls, score: float) -> Tier:
        """Bounds belong to the higher tier: 2 and 1 are balanced, 0.5 is light."""
        if score > 2:
            return cls.PRIORITY
        if score >= 1:
            return cls.BALANCED
        if score >= 0.5:
            return cls.LIGHT
        return cls.DEPRIORITISED


@dataclass(frozen=True)
class Policy:
    bucket_seconds: int = 3600
    half_life: float = 86400.0  # a bucket's weight halves in this time
    window: float = 7 * 86400.0  # older buckets are dropped
    start: int = 64 * MiB  # the starting share: a new peer scores 1.0

    def __post_init__(self) -> None:
        if self.bucket_seconds < 1 or self.half_life <= 0 or self.window < self.bucket_seconds or self.start < 1:
            raise ValueError(f"unusable ledger policy {self}")


@dataclass
class Account:
    contributed: dict[int, int] = field(default_factory=dict)  # bucket -> bytes
    consumed: dict[int, int] = field(default_factory=dict)


class Ledger:
    def __init__(self, policy: Policy | None = None) -> None:
        self.policy = policy or Policy()
        self.accounts: dict[str, Account] = {}  # base64 key -> its account

    def bucket(self, now: float) -> int:
        return int(now // self.policy.bucket_seconds)

    def add(self, key: str, kind: str, nbytes: int, now: float) -> None:
        if kind not in KINDS:
            raise ValueError(f"kind {kind!r}: one of {', '.join(KINDS)}")
        if nbytes < 0:
            raise ValueError(f"negative byte count {nbytes}")
        if nbytes:
            counts = getattr(self.accounts.setdefault(key, Account()), kind)
            b = self.bucket(now)
            counts[b] = counts.get(b, 0) + nbytes

    def prune(self, now: float) -> None:
        """Drop buckets older than the window, and accounts left empty."""
        oldest = self.bucket(now - self.policy.window)
        for key in list(self.accounts):
            acct = self.accounts[key]
            for kind in KINDS:
                counts = getattr(acct, kind)
                for b in [b for b in counts if b < oldest]:
                    del counts[b]
            if not acct.contributed and not acct.consumed:
                del self.accounts[key]

    def decayed(self, key: str, kind: str, now: float) -> float:
        acct = self.accounts.get(key)
        if acct is None:
            return 0.0
        p, oldest = self.policy, self.bucket(now - self.policy.window)
        total = 0.0
        for b, n in getattr(acct, kind).items():
            if b < oldest:
                continue
            age = max(0.0, now - (b + 1) * p.bucket_seconds)  # the current bucket counts in full
            total += n * math.pow(0.5, age / p.half_life)
        return total

    def score(self, key: str, now: float) -> float:
        s = self.policy.start
        return (self.decayed(key, "contributed", now) + s) / (self.decayed(key, "consumed", now) + s)

    def tier(self, key: str, now: float) -> Tier:
        return Tier.of(self.score(key, now))

    def totals(self, key: str) -> dict[str, int]:
        """Undecayed bytes within the kept buckets, for people and the exporter."""
        acct = self.accounts.get(key, Account())
        return {kind: sum(getattr(acct, kind).values()) for kind in KINDS}

    # ---- the file

    def document(self, now: float) -> dict[str, Any]:
        self.prune(now)
        return {
            "format": FORMAT,
            "bucket_seconds": self.policy.bucket_seconds,
            "saved_at": int(now),
            "peers": {
                key: {kind: sorted([b, n] for b, n in getattr(acct, kind).items()) for kind in KINDS}
                for key, acct in sorted(self.accounts.items())
            },
        }

    def save(self, path: Path, now: float) -> None:
        peerfile.save(path, self.document(now), indent=None)

    @classmethod
    def parse(cls, text: bytes | str, source: str = "ledger", policy: Policy | None = None) -> Ledger:
        ledger = cls(policy)
        doc = peerfile.format_object(text, source, "relay ledger", FORMAT, LedgerError)
        if doc.get("bucket_seconds") != ledger.policy.bucket_seconds:
            raise LedgerError(
                f"{source}: bucket_seconds {doc.get('bucket_seconds')!r}, this relay counts in"
                f" {ledger.policy.bucket_seconds}-second buckets"
            )
        peers = doc.get("peers")
        if not isinstance(peers, dict):
            raise LedgerError(f'{source}: "peers" must be an object')
        for key, entry in peers.items():
            try:
                decode_key(key)
            except ValueError as exc:
                raise LedgerError(f"{source}: peers key {key!r}: {exc}") from None
            if not isinstance(entry, dict) or set(entry) - set(KINDS):
                raise LedgerError(f"{source}: peers[{key}] must be an object of {', '.join(KINDS)}")
            acct = Account()
            for kind in KINDS:
                pairs = entry.get(kind, [])
                ok = isinstance(pairs, list) and all(
                    isinstance(p, list) and len(p) == 2 and all(_count(v) for v in p) for p in pairs
                )
                if not ok:
                    raise LedgerError(f"{source}: peers[{key}].{kind} must be a list of [bucket, bytes] whole numbers")
                for b, n in pairs:
                    if b in getattr(acct, kind):
                        raise LedgerError(f"{source}: peers[{key}].{kind}: bucket {b} appears twice")
                    getattr(acct, kind)[b] = n
            ledger.accounts[key] = acct
        return ledger

    @classmethod
    def load(cls, path: Path, policy: Policy | None = None) -> Ledger:
        """The ledger at path; an empty one if there is no file."""
        try:
            text = Path(path).read_bytes()
        except FileNotFoundError:
            return cls(policy)
        except OSError as exc:
            raise LedgerError(f"{path}: {exc.strerror}") from None
        return cls.parse(text, str(path), policy)


def _count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0
