"""One-time tickets of the relay port (docs/relay.md section 5)."""

from __future__ import annotations

import hmac
import secrets
import threading
from dataclasses import dataclass
from typing import Generic, TypeVar

from pooltools.relay.control import TICKET_BYTES, TICKET_SECONDS

T = TypeVar("T")


@dataclass(frozen=True)
class _Entry(Generic[T]):
    what: T
    expires: float


class TicketBook(Generic[T]):
    """Tickets handed out over the control channel, each good for one connection until it expires.

    Shared by the control threads (issue) and the relay port's event loop (redeem).
    """

    def __init__(self, limit: int = 1024, lifetime: float = TICKET_SECONDS) -> None:
        self.limit, self.lifetime = limit, lifetime
        self._entries: dict[bytes, _Entry[T]] = {}
        self._lock = threading.Lock()

    def issue(self, what: T, now: float) -> bytes | None:
        """A new ticket for `what`; None when `limit` tickets are outstanding (the relay is busy)."""
        with self._lock:
            self._expire(now)
            if len(self._entries) >= self.limit:
                return None
            ticket = secrets.token_bytes(TICKET_BYTES)
            self._entries[ticket] = _Entry(what, now + self.lifetime)
            return ticket

    def redeem(self, ticket: bytes, now: float) -> T | None:
        """What the ticket was issued for, once; None for an unknown, used or expired ticket."""
        with self._lock:
            self._expire(now)
            # a dictionary lookup's timing depends on the key: compare each in constant time
            for known in list(self._entries):
                if hmac.compare_digest(known, ticket):
                    return self._entries.pop(known).what
            return None

    def outstanding(self, now: float) -> int:
        with self._lock:
            self._expire(now)
            return len(self._entries)

    def _expire(self, now: float) -> None:
        for t in [t for t, e in self._entries.items() if e.expires <= now]:
            del self._entries[t]
