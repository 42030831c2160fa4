"""Three pool_relay nodes in one process: A's door, B relaying, C delivering to a stand-in for
its pool.ko listener, control messages over in-memory links (docs/relay.md section 1)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hashlib
import os
from collections.abc import AsyncIterator

import pytest
from pooltools.common.link import MemoryLink
from pooltools.protocol.handshake import Initiator
from pooltools.protocol.keys import encode_key
from pooltools.protocol.x25519 import public_key
from pooltools.relay import enrolment as en
from pooltools.relay.channel import ControlChannel
from pooltools.relay.ledger import Ledger
from pooltools.relay.service import Relay

SECRETS = {n: os.urandom(32) for n in "ABC"}
KEYS = {n: public_key(s) for n, s in SECRETS.items()}


def _enrolment(relay: bool, *peers: tuple[str, bool]) -> en.Enrolment:
    e = en.Enrolment(relay=relay)
    for name, accept in peers:
        e = en.enrolled(e, en.peer(encode_key(KEYS[name]), name, accept))
    return e


class Lab:
    def __init__(self, b_relays: bool = True, c_accepts_b: bool = True, flip_at: int | None = None) -> None:
        self.enrol = {
            "A": _enrolment(False, ("B", False)),
            "B": _enrolment(b_relays, ("A", False), ("C", False)),
            "C": _enrolment(False, ("B", c_accepts_b)),
        }
        self.received = bytearray()  # what C's "pool.ko" got
        self.pool_port = 0
        self.nodes = {
            n: Relay(
                enrolment=lambda n=n: self.enrol[n],
                routes=(lambda: {KEYS["C"]: [KEYS["B"]]}) if n == "A" else dict,
                peer_host=lambda key: "127.0.0.1",
                local_pool=("127.0.0.1", 0),
                ledger=Ledger(),
                flip_at=flip_at if n == "B" else None,
            )
            for n in "ABC"
        }
        self.workers = concurrent.futures.ThreadPoolExecutor(4)
        self.links: list[MemoryLink] = []
        for x, y in (("A", "B"), ("B", "C")):
            lx, ly = MemoryLink.pair()
            self.links += [lx, ly]
            self.nodes[x].channels[KEYS[y]] = ControlChannel(KEYS[y], lx, self.nodes[x].handle, self.workers).start()
            self.nodes[y].channels[KEYS[x]] = ControlChannel(KEYS[x], ly, self.nodes[y].handle, self.workers).start()

    async def pool_listener(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(1 << 16):
            self.received += data
        writer.write(b"pong:" + hashlib.sha256(bytes(self.received)).hexdigest().encode())
        writer.close()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Lab]:
        pool = await asyncio.start_server(self.pool_listener, "127.0.0.1", 0)
        self.nodes["C"].local_pool = ("127.0.0.1", pool.sockets[0].getsockname()[1])
        tasks = []
        for node in self.nodes.values():
            ev = asyncio.Event()
            tasks.append(asyncio.create_task(node.serve(("127.0.0.1", 0), ("127.0.0.1", 0), ev)))
            await ev.wait()
        try:
            yield self
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            pool.close()
            for link in self.links:
                link.close()
            self.workers.shutdown(wait=False)

    async def through_door(self, body: bytes) -> bytes:
        """What A's pool.ko would do: connect to the door, send an INIT for C, then bytes."""
        init = Initiator(SECRETS["A"], KEYS["C"]).create_init()
        r, w = await asyncio.open_connection("127.0.0.1", self.nodes["A"].door_port)
        w.write(init + body)
        w.write_eof()
        answer = await asyncio.wait_for(r.read(), 20)
        w.close()
        self.sent = init + body
        return answer


def test_a_reaches_c_through_b_and_everyone_counts() -> None:
    async def main() -> None:
        async with Lab().running() as lab:
            body = os.urandom(1 << 20)
            answer = await lab.through_door(body)
            assert bytes(lab.received) == lab.sent  # the INIT first, then every byte, unchanged
            assert answer == b"pong:" + hashlib.sha256(lab.sent).hexdigest().encode()
            total = len(lab.sent) + len(answer)
            a, b = lab.nodes["A"], lab.nodes["B"]
            assert b.ledger.totals(encode_key(KEYS["A"]))["consumed"] == total
            assert a.ledger.totals(encode_key(KEYS["B"]))["contributed"] == total
            # A consumed about 1 MiB of B's and gave nothing: (0 + 64 MiB) / (1 MiB + 64 MiB)
            assert b.figures(KEYS["A"])["score"] == pytest.approx(64 / (64 + total / 2**20), abs=1e-4)
            assert b.figures(KEYS["A"])["tier"] == "light"
            assert a.tickets.outstanding(0) == b.tickets.outstanding(0) == 0
            # the exporter's counters: each node by its role, running or ended, never falling
            assert b.counters() == {"connections": {"relay": 1}, "carried_bytes": {"relay": total}, "refusals": {}}
            assert a.counters()["connections"] == {"source": 1}
            assert lab.nodes["C"].counters()["connections"] == {"destination": 1}

    asyncio.run(main())


def test_each_node_hears_when_its_relayed_connection_starts_and_ends() -> None:
    """What keeps `pool_relay status` current (the daemon rewrites its status file then)."""

    async def main() -> None:
        async with Lab().running() as lab:
            seen: dict[str, list[list[str]]] = {n: [] for n in "ABC"}
            for name, node in lab.nodes.items():
                node.on_carried = lambda name=name, node=node: seen[name].append([c.role for c in node.carried])
            await lab.through_door(b"x" * 1000)

            async def all_ended() -> None:
                while any(node.carried for node in lab.nodes.values()):
                    await asyncio.sleep(0.01)

            await asyncio.wait_for(all_ended(), 20)
            assert seen == {"A": [["source"], []], "B": [["relay"], []], "C": [["destination"], []]}

    asyncio.run(main())


@pytest.mark.parametrize(
    ("lab_kw", "log_text"),
    [({"c_accepts_b": False}, "not_accepted"), ({"b_relays": False}, "relay_disabled")],
)
def test_refusals_reach_the_door_and_nothing_reaches_c(
    lab_kw: dict, log_text: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> None:
        async with Lab(**lab_kw).running() as lab:
            assert await lab.through_door(b"secret") == b""  # the door closes the connection
            assert lab.received == b""
            assert lab.nodes["B"].ledger.accounts == {}
            assert lab.nodes["B"].counters()["refusals"] == {log_text: 1}
            assert lab.nodes["B"].counters()["connections"] == {}

    caplog.set_level("INFO", logger="pool_relay")
    asyncio.run(main())
    assert log_text in caplog.text


def test_a_handshake_for_nobody_routed_is_closed_at_the_door() -> None:
    async def main() -> None:
        async with Lab().running() as lab:
            init = Initiator(SECRETS["A"], public_key(os.urandom(32))).create_init()
            r, w = await asyncio.open_connection("127.0.0.1", lab.nodes["A"].door_port)
            w.write(init)
            assert await asyncio.wait_for(r.read(), 10) == b""
            assert lab.received == b""

    asyncio.run(main())


def test_a_flipped_byte_on_the_relay_arrives_flipped() -> None:
    """The ends see the change: here C's stand-in gets exactly one byte altered."""

    async def main() -> None:
        async with Lab(flip_at=500).running() as lab:
            await lab.through_door(os.urandom(4096))
            diff = [i for i, (x, y) in enumerate(zip(lab.received, lab.sent, strict=True)) if x != y]
            assert diff == [500]

    asyncio.run(main())


def test_a_stale_or_forged_ticket_gets_nothing() -> None:
    async def main() -> None:
        async with Lab().running() as lab:
            r, w = await asyncio.open_connection("127.0.0.1", lab.nodes["B"].port)
            w.write(os.urandom(32) + b"payload")
            assert await asyncio.wait_for(r.read(), 10) == b""
            assert lab.received == b""

    asyncio.run(main())


def test_a_channel_whose_session_ended_lets_go_of_it() -> None:
    """The reader closes our end when the peer's does: an ended session must not stay in
    pool.ko's table held by the relay's descriptor."""
    import time

    from pooltools.relay.channel import ControlChannel

    near, far = MemoryLink.pair()
    ch = ControlChannel(KEYS["B"], near, lambda peer, req: b"", concurrent.futures.ThreadPoolExecutor(1)).start()
    far.close()
    deadline = time.monotonic() + 5
    while not near.closed.is_set():
        assert time.monotonic() < deadline, "the channel kept its end open"
        time.sleep(0.05)
    assert ch.closed.is_set()
