"""Services ride on the sessions poold holds (docs/vault.md section 1, docs/relay.md section 4)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Any

from pooltools.kernel.device import LIVE_STATES, PoolError

log = logging.getLogger(__name__)

# (index, attached session, its info) -> the service's object for it, or None to let it go
Start = Callable[[int, Any, Any], object | None]


class SessionWatcher:
    """Attach the sessions someone holds; let go of those only this service still holds.

    A service never keeps a session alive: a session ends when its last descriptor closes,
    and the service's must not be that last one (a client's own session, poold's after a
    restart). Sessions nobody holds yet (in the accept queue) are poold's to take first.
    """

    def __init__(self, dev: Any, start: Start, wanted: Callable[[Any], bool] = lambda info: True) -> None:
        self.dev, self.start, self.wanted = dev, start, wanted
        self.attached: dict[int, object] = {}
        # sessions the service declined, by (index, established_ns): an index outlives its session
        self.declined: set[tuple[int, int]] = set()

    def discover(self) -> None:
        try:
            live = {s.index: s for s in self.dev.sessions() if s.state in LIVE_STATES}
        except PoolError as exc:
            log.warning("cannot list sessions: %s", exc)
            return
        for index in list(self.attached):
            info = live.get(index)
            if info is not None and info.fds <= 1:  # ours is the only descriptor left
                self.close(index)
        self.declined &= {(i, info.established_ns) for i, info in live.items()}
        for index, info in live.items():
            if index in self.attached or info.fds < 1 or not self.wanted(info):
                continue
            if (index, info.established_ns) in self.declined:
                continue  # asked once: the answer holds while the session lives
            try:
                session = self.dev.attach(index)
            except PoolError as exc:
                log.debug("session %d not attached: %s", index, exc)
                continue
            service_object = self.start(index, session, info)
            if service_object is None:
                session.close()
                self.declined.add((index, info.established_ns))
            else:
                self.attached[index] = service_object

    def close(self, index: int) -> None:
        """End session index for everyone (revocation, or ours being the last descriptor)."""
        with contextlib.suppress(PoolError):
            self.dev.close_session(index)

    def closer(self, index: int) -> Callable[[], None]:
        return lambda: self.close(index)

    def forget(self, index: int) -> None:
        """The service is done with session index (its conversation ended). The sessions it
        declined are asked again: a service declines a session while another one serves that
        peer, and that one may have been this."""
        if self.attached.pop(index, None) is not None:
            self.declined.clear()
