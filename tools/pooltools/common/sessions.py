"""Services ride on the sessions poold holds (docs/vault.md section 1, docs/relay.md section 4).

poold publishes the sessions it holds in POOLD_SESSIONS (poold(8), FILES); a service attaches
those and no other: a session a client opened for itself (pool_test, a vault client, a probe) is
that client's, and ends when it closes it, whatever services run on the node.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from pooltools.common.fsutil import atomic_write
from pooltools.kernel.device import LIVE_STATES, PoolError

log = logging.getLogger(__name__)

POOLD_SESSIONS = Path("/run/pool/sessions.json")
SESSIONS_FORMAT = 1

# A session is named by its index and its establishment time: an index outlives its session.
SessionId = tuple[int, int]

# (index, attached session, its info) -> the service's object for it, or None to let it go
Start = Callable[[int, Any, Any], object | None]


def write_held(path: Path, infos: Iterable[Any]) -> None:
    """poold's side: the sessions it holds, replacing the file atomically (readable by all: it
    names public keys and session indexes only)."""
    doc = {
        "format": SESSIONS_FORMAT,
        "sessions": [
            {"index": i.index, "established_ns": i.established_ns, "peer_public_key": bytes(i.peer_public_key).hex()}
            for i in sorted(infos, key=lambda i: i.index)
        ],
    }
    atomic_write(path, (json.dumps(doc, indent=1) + "\n").encode(), mode=0o644)


def read_held(path: Path = POOLD_SESSIONS) -> set[SessionId]:
    """The services' side: the sessions poold holds; none when poold does not run (no file) or
    the file cannot be read, so a service never holds a session poold let go of."""
    try:
        doc = json.loads(Path(path).read_text())
        if doc.get("format") != SESSIONS_FORMAT:
            raise ValueError(f"format {doc.get('format')!r}, expected {SESSIONS_FORMAT}")
        return {(int(s["index"]), int(s["established_ns"])) for s in doc["sessions"]}
    except FileNotFoundError:
        return set()
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        log.warning("%s: %s: no session counts as poold's", path, exc)
        return set()


def poold_sessions_with(dev: Any, key: bytes, held: Callable[[], set[SessionId]] = read_held) -> list[SessionId]:
    """The live sessions poold holds with the peer of this key, oldest first."""
    poolds = held()
    return sorted(
        sid
        for s in dev.sessions()
        if bytes(s.peer_public_key) == key and s.state in LIVE_STATES and (sid := (s.index, s.established_ns)) in poolds
    )


class SessionWatcher:
    """Attach the sessions poold holds; end those poold no longer holds.

    A service never keeps a session alive: it attaches only what poold publishes as held, and
    when poold lets go of one (poold stopped, the module lost its state) the service ends it
    rather than become its last holder. Sessions in the accept queue are poold's to take first.
    """

    def __init__(
        self,
        dev: Any,
        start: Start,
        wanted: Callable[[Any], bool] = lambda info: True,
        held: Callable[[], set[SessionId]] = read_held,
    ) -> None:
        self.dev, self.start, self.wanted, self.held = dev, start, wanted, held
        self.attached: dict[int, object] = {}
        self.attached_ids: dict[int, SessionId] = {}
        self.declined: set[SessionId] = set()  # asked once: the answer holds while the session lives

    def discover(self) -> None:
        try:
            live = {s.index: s for s in self.dev.sessions() if s.state in LIVE_STATES}
        except PoolError as exc:
            log.warning("cannot list sessions: %s", exc)
            return
        held = self.held()
        for index, sid in list(self.attached_ids.items()):
            if index in live and sid not in held:
                log.info("session %d: poold no longer holds it: ended", index)
                self.close(index)
        ids = {(i, info.established_ns): info for i, info in live.items()}
        self.declined &= set(ids)
        for sid, info in ids.items():
            index = sid[0]
            if index in self.attached or sid not in held or sid in self.declined or not self.wanted(info):
                continue
            try:
                session = self.dev.attach(index)
            except PoolError as exc:
                log.debug("session %d not attached: %s", index, exc)
                continue
            service_object = self.start(index, session, info)
            if service_object is None:
                session.close()
                self.declined.add(sid)
            else:
                self.attached[index] = service_object
                self.attached_ids[index] = sid

    def close(self, index: int) -> None:
        """End session index for everyone (revocation, or poold having let go of it)."""
        with contextlib.suppress(PoolError):
            self.dev.close_session(index)

    def closer(self, index: int) -> Callable[[], None]:
        return lambda: self.close(index)

    def forget(self, index: int) -> None:
        """The service is done with session index (its conversation ended). The sessions it
        declined are asked again: a service declines a session while another one serves that
        peer, and that one may have been this."""
        self.attached_ids.pop(index, None)
        if self.attached.pop(index, None) is not None:
            self.declined.clear()
