"""pool_relay's data path on socket pairs: splicing, counting, the fault switch, back-pressure
and the scheduler's caps and shares (docs/relay.md sections 1 and 6)."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import os
import socket
import struct
from pathlib import Path

import pytest
from pooltools.relay import splice as splice_module
from pooltools.relay.limits import Scheduler
from pooltools.relay.splice import Flow, Listener, splice, unacknowledged


async def _ends() -> tuple[socket.socket, socket.socket]:
    outer, inner = socket.socketpair()
    outer.setblocking(False)
    inner.setblocking(False)
    return outer, inner


async def _relay(**kw):
    a_out, a_in = await _ends()
    b_out, b_in = await _ends()
    flow = Flow()
    task = asyncio.create_task(splice(a_in, b_in, flow, **kw))
    return a_out, b_out, flow, task


async def _send_all(sock: socket.socket, data: bytes, eof: bool = True) -> None:
    loop = asyncio.get_running_loop()
    await loop.sock_sendall(sock, data)
    if eof:
        sock.shutdown(socket.SHUT_WR)


async def _read_all(sock: socket.socket) -> bytes:
    loop, out = asyncio.get_running_loop(), bytearray()
    while chunk := await loop.sock_recv(sock, 1 << 16):
        out += chunk
    return bytes(out)


def test_both_directions_arrive_whole_and_are_counted() -> None:
    async def main() -> None:
        a, b, flow, task = await _relay()
        there, back = os.urandom(3 << 20), os.urandom(1 << 20)
        got_b, got_a, *_ = await asyncio.gather(_read_all(b), _read_all(a), _send_all(a, there), _send_all(b, back))
        await asyncio.wait_for(task, 10)
        assert hashlib.sha256(got_b).digest() == hashlib.sha256(there).digest()
        assert got_a == back
        assert (flow.forward, flow.backward) == (len(there), len(back))

    asyncio.run(main())


def test_a_direction_gets_a_big_pipe_where_allowed_and_still_works_without() -> None:
    """A splice from TCP takes a pipe slot per received segment: the relay asks for PIPE_SIZE,
    and where the system refuses (fs.pipe-max-size lowered, the user's pipe pages used up) it
    keeps the pipe it got and still moves every byte."""
    out, inp, size = splice_module._pipe()
    os.close(out)
    os.close(inp)
    max_size = int(Path("/proc/sys/fs/pipe-max-size").read_text())
    assert size == splice_module.PIPE_SIZE or max_size < splice_module.PIPE_SIZE

    real_fcntl = fcntl.fcntl

    def refuse_resize(fd: int, cmd: int, *args: int) -> int:
        if cmd == fcntl.F_SETPIPE_SZ:
            raise PermissionError(1, "Operation not permitted")
        return real_fcntl(fd, cmd, *args)

    async def main() -> None:
        a, b, flow, task = await _relay()
        data = os.urandom(1 << 20)
        got, *_ = await asyncio.gather(_read_all(b), _send_all(a, data), _send_all(b, b""))
        await asyncio.wait_for(task, 10)
        assert got == data and flow.forward == len(data)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(splice_module.fcntl, "fcntl", refuse_resize)
        out, inp, size = splice_module._pipe()
        os.close(out)
        os.close(inp)
        assert 0 < size < splice_module.PIPE_SIZE
        asyncio.run(main())


def test_the_fault_switch_flips_exactly_one_byte() -> None:
    async def main() -> None:
        a, b, _, task = await _relay(flip_at=100_000)
        data = os.urandom(300_000)
        got, *_ = await asyncio.gather(_read_all(b), _send_all(a, data), _send_all(b, b""))
        await asyncio.wait_for(task, 10)
        diff = [i for i in range(len(data)) if got[i] != data[i]]
        assert diff == [100_000] and got[100_000] == data[100_000] ^ 0xFF

    asyncio.run(main())


def test_a_receiver_that_stops_reading_stops_the_sender() -> None:
    """The relay holds at most a chunk and the stream buffers: the sender's socket fills."""

    async def main() -> None:
        a, b, _, task = await _relay()
        sent, block = 0, os.urandom(1 << 16)
        deadline = asyncio.get_running_loop().time() + 5
        while asyncio.get_running_loop().time() < deadline:
            try:
                sent += a.send(block)
            except BlockingIOError:
                await asyncio.sleep(0.05)  # let the relay move what it can
                try:
                    sent += a.send(block)
                except BlockingIOError:
                    break
        print(f"sender stopped after {sent} bytes")
        assert sent < 32 << 20, f"the relay took {sent} bytes with nobody reading"
        a.shutdown(socket.SHUT_WR)
        b.shutdown(socket.SHUT_WR)
        got = await asyncio.wait_for(_read_all(b), 10)
        assert len(got) == sent  # nothing lost either
        await asyncio.wait_for(task, 10)

    asyncio.run(main())


def test_an_end_that_resets_ends_the_splice() -> None:
    async def main() -> None:
        a, b, _, task = await _relay()
        a.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        a.close()  # RST
        await _send_all(b, b"x" * 100, eof=False)
        with contextlib.suppress(ConnectionError):  # a reset may end it with the error, or as an end of stream
            await asyncio.wait_for(task, 10)
        assert task.done()
        assert await asyncio.wait_for(_read_all(b), 10) == b""  # B's side ended too

    asyncio.run(main())


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_scheduler_applies_per_peer_and_global_caps_and_weights() -> None:
    async def main() -> None:
        clock = FakeClock()
        weights = {"prio": 4.0, "depri": 0.5}
        s = Scheduler(total_rate=9000, peer_rate=100_000, weight=weights.__getitem__, clock=clock, tick=0.001)
        p = asyncio.create_task(s.admit("prio", 100_000))
        d = asyncio.create_task(s.admit("depri", 100_000))
        await asyncio.sleep(0)
        s.hand_out()
        assert await asyncio.gather(p, d) == [8000, 1000]  # 9000 split 4 : 0.5
        # the per-peer cap holds even when the global budget is plenty
        s2 = Scheduler(total_rate=10**9, peer_rate=5000, weight=lambda _: 1.0, clock=clock, tick=0.001)
        assert await s2.admit("x", 100_000) == 5000
        waiting = asyncio.create_task(s2.admit("x", 100_000))
        await asyncio.sleep(0.01)
        assert not waiting.done()  # the bucket is empty until time moves
        clock.now += 0.5
        assert await asyncio.wait_for(waiting, 5) == 2500
        with pytest.raises(ValueError):
            await s2.admit("x", 0)

    asyncio.run(main())


def test_splice_under_a_scheduler_moves_everything() -> None:
    async def main() -> None:
        s = Scheduler(total_rate=50 << 20, peer_rate=50 << 20, weight=lambda _: 1.0, tick=0.005)

        async def admit(n: int) -> int:
            return await s.admit("peer", n)

        a, b, flow, task = await _relay(admit=admit)
        data = os.urandom(2 << 20)
        got, *_ = await asyncio.gather(_read_all(b), _send_all(a, data), _send_all(b, b""))
        await asyncio.wait_for(task, 20)
        assert got == data and flow.forward == len(data)

    asyncio.run(main())


async def _tcp_pair() -> tuple[socket.socket, socket.socket]:
    """A TCP connection on loopback: (the outer end, the relay's inner end)."""
    accepted: asyncio.Future = asyncio.get_running_loop().create_future()

    async def on_connection(conn: socket.socket) -> None:
        accepted.set_result(socket.socket(fileno=os.dup(conn.fileno())))  # the listener closes conn

    listener = Listener(on_connection, "127.0.0.1", 0)
    outer = socket.create_connection(("127.0.0.1", listener.port))
    outer.setblocking(False)
    inner = await asyncio.wait_for(accepted, 10)
    inner.setblocking(False)
    await listener.close()
    return outer, inner


def test_the_last_words_of_an_end_that_resets_reach_the_other_end() -> None:
    """B sends its last bytes and resets while A keeps sending (docs/protocol.md section 4: a
    CLOSE followed by a reset): asyncio's reader would discard what it buffered, closing A's side
    with A's bytes unread resets A too, and the direction towards B failing (B is gone) must not
    stop the direction from B. A still gets every byte B sent."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        a, a_in = await _tcp_pair()
        b, b_in = await _tcp_pair()
        # small buffers towards A: when B resets, most of its last words still wait in the relay
        a.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        a_in.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
        task = asyncio.create_task(splice(a_in, b_in, Flow()))
        last_words = os.urandom(3 << 20)
        flooding = True

        async def flood() -> None:  # A never stops sending: the relay always has A's bytes unread
            block = os.urandom(1 << 16)
            with contextlib.suppress(OSError):
                while flooding:
                    await loop.sock_sendall(a, block)

        async def read_a() -> bytes:
            out = bytearray()
            with contextlib.suppress(ConnectionError):
                while chunk := await loop.sock_recv(a, 1 << 16):
                    out += chunk
                    await asyncio.sleep(0.001)  # a slow reader: the relay's side towards A backs up
            return bytes(out)

        flooder, reader = asyncio.create_task(flood()), asyncio.create_task(read_a())
        await loop.sock_sendall(b, last_words)
        while unacknowledged(b):  # B's kernel handed everything to the relay's
            await asyncio.sleep(0.01)
        b.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        b.close()  # a reset, with A's bytes unread at B
        got = await asyncio.wait_for(reader, 30)
        flooding = False
        await asyncio.wait_for(flooder, 10)
        with contextlib.suppress(OSError):
            await asyncio.wait_for(task, 10)
        a.close()
        assert len(got) == len(last_words) and got == last_words

    asyncio.run(main())


def test_closing_a_listener_ends_the_connections_it_carries() -> None:
    """A relay that stops ends its relayed connections (both sides see the end of the stream)
    instead of leaving them open behind a closed port."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        far_out, far_in = await _ends()

        async def carry(conn: socket.socket) -> None:
            await splice(conn, far_in, Flow())

        listener = Listener(carry, "127.0.0.1", 0)
        near = socket.create_connection(("127.0.0.1", listener.port))
        near.setblocking(False)
        await loop.sock_sendall(near, b"hello")
        assert await asyncio.wait_for(loop.sock_recv(far_out, 16), 10) == b"hello"
        await asyncio.wait_for(listener.close(), 10)
        assert await asyncio.wait_for(_read_all(far_out), 10) == b""
        assert await asyncio.wait_for(_read_all(near), 10) == b""
        near.close()

    asyncio.run(main())
