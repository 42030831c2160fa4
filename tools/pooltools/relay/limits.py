"""Rate caps and the weighted share of a busy relay (docs/relay.md section 6)."""

from __future__ import annotations

from collections.abc import Mapping


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
    open_ = {k for k, (_, want) in demands.items() if want > 0}
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
