"""Rate caps and the weighted share of a busy relay (docs/relay.md section 6)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping


class TokenBucket:
    """`rate` bytes per second with `burst` bytes of credit (one second's worth by default)."""

    def __init__(self, rate: float, burst: float | None = None, now: float = 0.0) -> None:
        if rate <= 0:
            raise ValueError(f"rate {rate} must be positive")
        self.rate = float(rate)
        self.burst = float(burst if burst is not None else rate)
        self.tokens = self.burst
        self.stamp = now

    def _refill(self, now: float) -> None:
        if now > self.stamp:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now

    def available(self, now: float) -> float:
        self._refill(now)
        return self.tokens

    def take(self, nbytes: int, now: float) -> int:
        """As many of nbytes as the bucket allows now (0 to nbytes), taken from it."""
        self._refill(now)
        got = int(min(nbytes, max(0.0, self.tokens)))
        self.tokens -= got
        return got

    def wait(self, nbytes: int, now: float) -> float:
        """Seconds until nbytes (at most the burst) are available."""
        self._refill(now)
        need = min(float(nbytes), self.burst) - self.tokens
        return max(0.0, need / self.rate)


def weighted_share(capacity: int, demands: Mapping[str, tuple[float, int]]) -> dict[str, int]:
    """Split capacity bytes among peers {key: (weight, bytes wanted)} in proportion to their
    weights, never giving a peer more than it wants; what one leaves goes to the others.

    Every peer with a positive weight that wants bytes gets at least one byte while capacity
    lasts, so a deprioritised peer is served last but never starved to nothing.
    """
    if capacity < 0:
        raise ValueError(f"capacity {capacity} is negative")
    for key, (weight, want) in demands.items():
        if weight <= 0 or want < 0:
            raise ValueError(f"peer {key}: weight {weight} must be positive, demand {want} not negative")
    grant = dict.fromkeys(demands, 0)
    open_ = {k for k, (_weight, want) in demands.items() if want > 0}
    left = capacity
    while left > 0 and open_:
        total = sum(demands[k][0] for k in open_)
        handed = 0
        # the largest weights first, so rounding never leaves a heavy peer behind a light one
        for k in sorted(open_, key=lambda k: (-demands[k][0], k)):
            weight, want = demands[k]
            part = min(want - grant[k], max(1, int(left * weight / total)), left - handed)
            grant[k] += part
            handed += part
            if grant[k] >= want:
                open_.discard(k)
            if handed >= left:
                break
        left -= handed
    return grant


class Scheduler:
    """Admits relayed bytes under a global and per-peer caps, sharing a scarce global budget
    among the peers waiting in proportion to their weights (docs/relay.md section 6).

    Pumps call `await admit(peer, n)` before they forward and get a grant of 1 to n bytes.
    A tick (every `tick` seconds) hands out what the buckets hold; nothing waits in a queue
    longer than the caps make it, and nothing is buffered here: a pump that waits stops
    reading, so TCP pushes back on its sender.
    """

    def __init__(
        self,
        total_rate: float,
        peer_rate: float,
        weight: Callable[[str], float],
        clock: Callable[[], float] = time.monotonic,
        tick: float = 0.02,
    ) -> None:
        self.clock, self.tick, self.weight, self.peer_rate = clock, tick, weight, peer_rate
        self.total = TokenBucket(total_rate, now=clock())
        self.peers: dict[str, TokenBucket] = {}
        self.waiting: dict[str, list[tuple[int, asyncio.Future[int]]]] = {}
        self._task: asyncio.Task[None] | None = None

    def bucket(self, peer: str) -> TokenBucket:
        if peer not in self.peers:
            self.peers[peer] = TokenBucket(self.peer_rate, now=self.clock())
        return self.peers[peer]

    async def admit(self, peer: str, nbytes: int) -> int:
        if nbytes <= 0:
            raise ValueError(f"admit {nbytes} bytes")
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.waiting.setdefault(peer, []).append((nbytes, fut))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run())
        try:
            return await fut
        finally:
            if not fut.done():  # cancelled: withdraw the demand
                self.waiting[peer] = [(n, f) for n, f in self.waiting.get(peer, []) if f is not fut]

    def hand_out(self) -> None:
        """One round: grant from the buckets to the first waiter of each peer."""
        now = self.clock()
        demands: dict[str, tuple[float, int]] = {}
        for peer, queue in self.waiting.items():
            queue[:] = [(n, f) for n, f in queue if not f.done()]
            if queue:
                room = int(self.bucket(peer).available(now))
                if room > 0:
                    demands[peer] = (self.weight(peer), min(queue[0][0], room))
        if not demands:
            return
        shares = weighted_share(int(self.total.available(now)), demands)
        for peer, granted in shares.items():
            if granted <= 0:
                continue
            self.total.take(granted, now)
            self.bucket(peer).take(granted, now)
            _asked, fut = self.waiting[peer].pop(0)
            fut.set_result(granted)

    async def _run(self) -> None:
        while any(self.waiting.values()):
            self.hand_out()
            if any(self.waiting.values()):
                await asyncio.sleep(self.tick)
        self.waiting = {p: q for p, q in self.waiting.items() if q}
