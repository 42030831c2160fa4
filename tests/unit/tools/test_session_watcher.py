"""SessionWatcher (pooltools.common.sessions): a service attaches the sessions poold holds and no
other, ends those poold let go of, and asks once about a session it declined while it lives.
Also the file poold publishes them in (poold(8), FILES)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from pooltools.common.sessions import SessionWatcher, poold_sessions_with, read_held, write_held
from pooltools.kernel.device import LIVE_STATES

LIVE = next(iter(LIVE_STATES))


@dataclass
class Info:
    index: int
    established_ns: int
    fds: int = 1
    state: int = LIVE
    peer_public_key: bytes = bytes(32)


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
        self.ended: list[int] = []

    def sessions(self) -> list[Info]:
        return list(self.live.values())

    def attach(self, index: int) -> Session:
        self.attaches.append(index)
        self.live[index].fds += 1
        return Session(self, index)

    def close_session(self, index: int) -> None:
        self.ended.append(index)
        self.live.pop(index, None)


def held_of(dev: FakeDevice, *indexes: int) -> set[tuple[int, int]]:
    return {(i, dev.live[i].established_ns) for i in indexes}


def test_a_declined_session_is_asked_once_while_it_lives() -> None:
    dev = FakeDevice()
    dev.live = {1: Info(1, 100), 2: Info(2, 200)}
    poolds = held_of(dev, 1, 2)
    asked: list[int] = []

    def start(index: int, session: Session, info: Info) -> object | None:
        asked.append(index)
        return None if index == 2 else object()  # 2 serves a peer that 1 serves already

    w = SessionWatcher(dev, start, held=lambda: poolds)
    for _ in range(5):
        w.discover()
    assert asked == [1, 2] and dev.attaches == [1, 2] and dev.closed == [2]
    # the same index for a new session (the old one ended), which poold holds: asked again
    dev.live[2] = Info(2, 300)
    poolds = held_of(dev, 1, 2)
    w.discover()
    assert asked == [1, 2, 2]
    # once the service let go of session 1, what it declined may be welcome now
    w.forget(1)
    del dev.live[1]
    w.discover()
    assert asked == [1, 2, 2, 2]


def test_only_poold_sessions_are_attached() -> None:
    """A client's own session (a probe, a vault client) is the client's: three services on one
    node attaching it would keep it alive between them after the client closed it."""
    dev = FakeDevice()
    dev.live = {3: Info(3, 30), 4: Info(4, 40)}
    w = SessionWatcher(dev, lambda i, s, info: object(), held=lambda: {(3, 30)})
    w.discover()
    assert dev.attaches == [3], "attached a session poold does not hold"
    dev.live[4].fds = 0  # its client closed it: it ends, nobody else holds it
    assert dev.live[4].fds == 0


def test_an_index_poold_held_before_is_not_taken_for_its_successor() -> None:
    dev = FakeDevice()
    dev.live = {6: Info(6, 2)}  # index 6 again, a new session
    w = SessionWatcher(dev, lambda i, s, info: object(), held=lambda: {(6, 1)})  # poold's was the old one
    w.discover()
    assert dev.attaches == []


def test_a_session_poold_let_go_of_is_ended() -> None:
    dev = FakeDevice()
    dev.live = {7: Info(7, 1)}
    poolds = held_of(dev, 7)
    w = SessionWatcher(dev, lambda i, s, info: object(), held=lambda: poolds)
    w.discover()
    assert 7 in w.attached
    w.discover()
    assert dev.ended == [], "ended a session poold still holds"
    poolds = set()  # poold stopped, or let go of it
    w.discover()
    assert dev.ended == [7] and 7 not in dev.live


# ---- the file


def test_the_file_round_trips_and_is_replaced_whole(tmp_path: Path) -> None:
    path = tmp_path / "sessions.json"
    infos = [Info(9, 900, peer_public_key=b"\x01" * 32), Info(2, 200, peer_public_key=b"\x02" * 32)]
    write_held(path, infos)
    doc = json.loads(path.read_text())
    assert doc == {
        "format": 1,
        "sessions": [
            {"index": 2, "established_ns": 200, "peer_public_key": "02" * 32},
            {"index": 9, "established_ns": 900, "peer_public_key": "01" * 32},
        ],
    }
    assert path.stat().st_mode & 0o777 == 0o644
    assert read_held(path) == {(2, 200), (9, 900)}
    assert [p.name for p in tmp_path.iterdir()] == ["sessions.json"], "a temporary file was left behind"


@pytest.mark.parametrize(
    "content",
    ["", "{", "[]", '{"format": 2, "sessions": []}', '{"format": 1}', '{"format": 1, "sessions": [{"index": 1}]}'],
)
def test_a_bad_file_counts_as_no_session(tmp_path: Path, content: str, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "sessions.json"
    path.write_text(content)
    assert read_held(path) == set()
    assert str(path) in caplog.text


def test_no_file_means_poold_holds_nothing(tmp_path: Path) -> None:
    assert read_held(tmp_path / "absent.json") == set()


def test_poold_sessions_with_a_peer() -> None:
    dev = FakeDevice()
    a, b = b"\x0a" * 32, b"\x0b" * 32
    dev.live = {
        1: Info(1, 10, peer_public_key=a),
        2: Info(2, 20, peer_public_key=a),
        3: Info(3, 30, peer_public_key=b),
        4: Info(4, 40, peer_public_key=a, state=-1),
    }
    poolds = {(2, 20), (3, 30), (4, 40)}
    assert poold_sessions_with(dev, a, lambda: poolds) == [(2, 20)]
    assert poold_sessions_with(dev, b"\x0c" * 32, lambda: poolds) == []
