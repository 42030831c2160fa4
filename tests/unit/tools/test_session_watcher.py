"""SessionWatcher (pooltools.common.sessions): which sessions a service attaches, when it lets
go, and that a session it declined is not attached again and again while it lives."""

from __future__ import annotations

from dataclasses import dataclass

from pooltools.common.sessions import SessionWatcher
from pooltools.kernel.device import LIVE_STATES

LIVE = next(iter(LIVE_STATES))


@dataclass
class Info:
    index: int
    established_ns: int
    fds: int = 1
    state: int = LIVE


class Session:
    def __init__(self, dev: FakeDevice, index: int) -> None:
        self.dev, self.index = dev, index

    def close(self) -> None:
        self.dev.closed.append(self.index)
        self.dev.live[self.index].fds -= 1


class FakeDevice:
    def __init__(self) -> None:
        self.live: dict[int, Info] = {}
        self.attaches: list[int] = []
        self.closed: list[int] = []

    def sessions(self) -> list[Info]:
        return list(self.live.values())

    def attach(self, index: int) -> Session:
        self.attaches.append(index)
        self.live[index].fds += 1
        return Session(self, index)

    def close_session(self, index: int) -> None:
        self.live.pop(index, None)


def test_a_declined_session_is_asked_once_while_it_lives() -> None:
    dev = FakeDevice()
    dev.live = {1: Info(1, 100), 2: Info(2, 200)}
    asked: list[int] = []

    def start(index: int, session: Session, info: Info) -> object | None:
        asked.append(index)
        return None if index == 2 else object()  # 2 serves a peer that 1 serves already

    w = SessionWatcher(dev, start)
    for _ in range(5):
        w.discover()
    assert asked == [1, 2] and dev.attaches == [1, 2] and dev.closed == [2]
    # the same index for a new session (the old one ended): asked again
    dev.live[2] = Info(2, 300)
    w.discover()
    assert asked == [1, 2, 2]
    # once the service let go of session 1, what it declined may be welcome now
    w.forget(1)
    del dev.live[1]
    w.discover()
    assert asked == [1, 2, 2, 2]


def test_a_session_held_by_us_alone_is_ended() -> None:
    dev = FakeDevice()
    dev.live = {7: Info(7, 1)}
    w = SessionWatcher(dev, lambda i, s, info: object())
    w.discover()
    assert 7 in w.attached
    dev.live[7].fds = 1  # the holder closed its descriptor: ours is the last
    w.discover()
    assert 7 not in dev.live
