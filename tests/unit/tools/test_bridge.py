"""pool_bridge's multiplexer over an in-memory link, with real TCP on loopback at both ends:
many clients at once, a stalled one that holds up nobody, refusals, and bad frames."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import struct
from collections.abc import AsyncIterator

import pytest
from pooltools.bridge import wire
from pooltools.bridge.mux import Mux, Refused
from pooltools.bridge.wire import FrameError, Type
from pooltools.common.link import MemoryLink

BIG = 8 * 1024 * 1024


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Echo until EOF; "big" first asks for BIG bytes instead; "hld" reads to EOF and keeps its
    own side open (a half-closed stream stays a stream)."""
    first = await reader.read(3)
    if first == b"big":
        writer.write(os.urandom(BIG))
    elif first == b"hld":
        await reader.read()
        await asyncio.sleep(3600)
    else:
        writer.write(first)
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    with contextlib.suppress(ConnectionError):
        await writer.drain()
        writer.close()


class StalledBackend:
    """A backend that takes no byte: its writer's drain never returns, so the server never
    grants credit back and the only credit is the opening window."""

    def __init__(self) -> None:
        self.reader = asyncio.StreamReader()  # nothing ever comes from it
        self.written = 0

    def write(self, data: bytes) -> None:
        self.written += len(data)

    async def drain(self) -> None:
        await asyncio.Event().wait()

    def can_write_eof(self) -> bool:
        return False

    def close(self) -> None:
        pass


class Pair:
    """A client Mux and a server Mux over one in-memory link; a TCP echo service behind the
    server and a TCP listener in front of the client; "stall" is a backend that takes nothing."""

    def __init__(self) -> None:
        self.opened: list[str] = []

    async def connector(self, service: str, _mux: Mux) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        self.opened.append(service)
        if service == "stall":
            stalled = StalledBackend()
            return stalled.reader, stalled  # type: ignore[return-value]
        if service != "echo":
            raise Refused(f"unknown service {service!r}")
        return await asyncio.open_connection("127.0.0.1", self.backend_port)

    @contextlib.asynccontextmanager
    async def running(self, service: str = "echo") -> AsyncIterator[Pair]:
        a, b = MemoryLink.pair(depth=16)
        backend = await asyncio.start_server(echo, "127.0.0.1", 0)
        self.backend_port = backend.sockets[0].getsockname()[1]
        self.client = Mux("client", a, a, "client")
        self.server = Mux("server", b, b, "server", self.connector)

        async def front(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Refused):
                await self.client.open(service, reader, writer)

        listener = await asyncio.start_server(front, "127.0.0.1", 0)
        self.port = listener.sockets[0].getsockname()[1]
        try:
            yield self
        finally:
            listener.close()
            backend.close()
            self.client.close()
            self.server.close()
            a.close()
            b.close()

    async def round_trip(self, body: bytes) -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        writer.write(body)
        await writer.drain()
        writer.write_eof()
        got = await reader.read()
        writer.close()
        return got


def run(coro) -> None:
    asyncio.run(asyncio.wait_for(coro, 60))


def test_fifty_clients_at_once_each_get_their_own_bytes() -> None:
    async def main() -> None:
        async with Pair().running() as p:
            bodies = [os.urandom(100_000 + i * 997) for i in range(50)]
            got = await asyncio.gather(*(p.round_trip(b) for b in bodies))
            assert [hashlib.sha256(g).digest() for g in got] == [hashlib.sha256(b).digest() for b in bodies]
            await asyncio.sleep(0.2)
            assert p.client.streams == {} and p.server.streams == {}  # every stream ended

    run(main())


def test_a_stalled_client_holds_up_nobody_and_buffers_one_window() -> None:
    async def main() -> None:
        async with Pair().running() as p:
            reader, writer = await asyncio.open_connection("127.0.0.1", p.port)
            writer.write(b"big")  # then never reads
            await writer.drain()
            await asyncio.sleep(1)
            bodies = [os.urandom(300_000) for _ in range(20)]
            got = await asyncio.gather(*(p.round_trip(b) for b in bodies))
            assert got == bodies
            (stalled,) = p.client.streams.values()
            queued = sum(len(d) for d in stalled.inbound._queue if d)  # type: ignore[attr-defined]
            assert queued <= wire.WINDOW, f"{queued} bytes queued for a stalled reader"
            assert stalled.recv_allowed >= 0
            # once it reads, it gets every byte
            data = await reader.readexactly(BIG)
            assert len(data) == BIG
            writer.close()

    run(main())


def test_an_unknown_service_is_refused_and_the_tcp_client_sees_the_end() -> None:
    async def main() -> None:
        async with Pair().running(service="nosuch") as p:
            assert await p.round_trip(b"hello") == b""
            assert p.opened == ["nosuch"]
            assert p.server.streams == {} and p.client.streams == {}

    run(main())


def test_frames_decode_or_say_what_is_wrong() -> None:
    assert wire.decode(wire.encode(Type.OPEN, 7, b"web")).text == "web"
    assert wire.decode(wire.credit(7, 1000)).credit == 1000
    for message, why in [
        (b"\x04\x00\x00", "shorter than the 5-byte header"),
        (wire.encode(Type.DATA, 0, b"x"), "stream 0"),
        (b"\x09" + struct.pack(">I", 1), "unknown type 9"),
        (wire.encode(Type.OPEN, 1, b"Web/1"), "service name"),
        (wire.encode(Type.OPEN, 1, b""), "service name"),
        (wire.encode(Type.DATA, 1), "DATA without data"),
        (wire.encode(Type.CREDIT, 1, b"\x00\x00\x00\x00"), "increment of at least 1"),
        (wire.encode(Type.CREDIT, 1, b"\x01"), "4-byte increment"),
        (wire.encode(Type.EOF, 1, b"x"), "EOF carries 1 bytes"),
        (wire.encode(Type.RESET, 1, b"x" * 201), "at most 200"),
    ]:
        with pytest.raises(FrameError, match=why):
            wire.decode(message)
    long_reason = wire.decode(wire.reason(Type.RESET, 3, "é" * 150))
    assert len(long_reason.payload) <= wire.MAX_REASON and long_reason.text == "é" * 100


def test_protocol_violations_reset_the_stream_and_nothing_else() -> None:
    """Raw frames into a server: DATA beyond credit, DATA after EOF, DATA for no stream."""

    async def main() -> None:
        pair = Pair()
        a, b = MemoryLink.pair(depth=64)
        backend = await asyncio.start_server(echo, "127.0.0.1", 0)
        pair.backend_port = backend.sockets[0].getsockname()[1]
        server = Mux("server", b, b, "server", pair.connector)
        replies: list[wire.Frame] = []

        async def expect(kind: Type, stream: int) -> wire.Frame:
            while True:
                for f in replies:
                    if f.type is kind and f.stream == stream:
                        return f
                message = await asyncio.to_thread(a.recv, 5)
                replies.append(wire.decode(message))

        try:
            a.send(b"\x01")  # garbage: dropped with a log line, the link stays
            a.send(wire.encode(Type.DATA, 99, b"x"))
            assert "not open" in (await expect(Type.RESET, 99)).text
            # more than the window in several frames, to a backend that takes nothing: with an
            # echo backend the server may grant credit back between frames, as it should
            a.send(wire.encode(Type.OPEN, 1, b"stall"))
            await expect(Type.ACCEPTED, 1)
            for _ in range(wire.WINDOW // wire.MAX_DATA + 1):
                a.send(wire.encode(Type.DATA, 1, b"z" * wire.MAX_DATA))
            assert "credit" in (await expect(Type.RESET, 1)).text
            a.send(wire.encode(Type.OPEN, 2, b"echo"))
            await expect(Type.ACCEPTED, 2)
            a.send(wire.encode(Type.DATA, 2, b"hld"))  # the backend keeps its side open after our EOF
            a.send(wire.encode(Type.EOF, 2))
            a.send(wire.encode(Type.DATA, 2, b"late"))
            assert "after EOF" in (await expect(Type.RESET, 2)).text
            a.send(wire.encode(Type.OPEN, 3, b"nosuch"))
            assert "unknown service" in (await expect(Type.REFUSED, 3)).text
            a.send(wire.encode(Type.OPEN, 4, b"echo"))
            await expect(Type.ACCEPTED, 4)  # after all that, a good stream still opens
        finally:
            server.close()
            backend.close()
            a.close()
            b.close()

    run(main())


def test_the_end_of_the_session_ends_every_stream() -> None:
    async def main() -> None:
        async with Pair().running() as p:
            reader, writer = await asyncio.open_connection("127.0.0.1", p.port)
            writer.write(b"big")
            await writer.drain()
            await reader.readexactly(1000)
            p.server.recv_link.close()  # the session ends under the server
            with contextlib.suppress(ConnectionError):
                rest = await reader.read()
                while rest:
                    rest = await reader.read()
            await asyncio.sleep(0.5)
            assert p.client.streams == {} and p.server.streams == {}

    run(main())


# ---- the command line


@pytest.mark.parametrize(
    ("argv", "why"),
    [
        (["tcp2pool"], "--forward"),
        (["tcp2pool", "--forward", "127.0.0.1:8080"], "LISTEN=PEER/SERVICE"),
        (["tcp2pool", "--forward", "127.0.0.1:8080=node2"], "LISTEN=PEER/SERVICE"),
        (["tcp2pool", "--forward", "127.0.0.1:8080=node2/Web"], "a service name is 1-64"),
        (["tcp2pool", "--forward", "localhost:8080=node2/web"], "localhost:8080=node2/web"),
        (["tcp2pool", "--forward", "127.0.0.1:0=node2/web"], "127.0.0.1:0"),
        (["pool2tcp"], "--service"),
        (["pool2tcp", "--service", "web"], "NAME=HOST:PORT"),
        (["pool2tcp", "--service", "web=127.0.0.1"], "web=127.0.0.1"),
        (["pool2tcp", "--service", "web=127.0.0.1:80", "--max-streams", "0"], "at least 1"),
        (["bounce"], "invalid choice"),
    ],
)
def test_bad_arguments_fail_in_one_line_naming_them(argv: list[str], why: str, capsys) -> None:
    from pooltools.bridge import cli

    assert cli.main(argv, device_factory=lambda: pytest.fail("the device was opened")) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("pool_bridge: ") and "\n" not in err and why in err, err


def test_arguments_parse_into_forwards_and_services() -> None:
    from pooltools.bridge import cli

    args = cli.build_parser().parse_args(
        ["tcp2pool", "--forward", "[::1]:8080=node2/web", "--forward", "127.0.0.1:81=k/db"]
    )
    assert args.forward == [cli.Forward("::1", 8080, "node2", "web"), cli.Forward("127.0.0.1", 81, "k", "db")]
    args = cli.build_parser().parse_args(["pool2tcp", "--service", "web=127.0.0.1:80", "--allow", "node1"])
    assert args.service == [cli.Service("web", "127.0.0.1", 80)] and args.allow == ["node1"]


def test_a_peer_not_in_the_trust_store_is_named(capsys) -> None:
    from pooltools.bridge import cli
    from pooltools.kernel.fakedevice import FakeDevice

    assert cli.main(["tcp2pool", "--forward", "127.0.0.1:1=nobody/web"], device_factory=FakeDevice) == 5
    assert "peer nobody: not in the trust store" in capsys.readouterr().err


def test_the_server_refuses_what_it_does_not_offer_or_allow() -> None:
    from pooltools.bridge import cli
    from pooltools.kernel.fakedevice import FakeDevice

    async def main() -> None:
        dev = FakeDevice()
        dev.peer_add(b"A" * 32, "node1")
        server = cli.Server(dev, {"web": cli.Service("web", "127.0.0.1", 9)}, ["node1"], 8)

        class Peer:
            peer = b"B" * 32

        with pytest.raises(Refused, match="not allowed"):
            await server.connect("web", Peer)  # type: ignore[arg-type]
        Peer.peer = b"A" * 32
        with pytest.raises(Refused, match="unknown service 'db'"):
            await server.connect("db", Peer)  # type: ignore[arg-type]
        with pytest.raises(Refused, match=r"connect 127\.0\.0\.1:9: "):
            await server.connect("web", Peer)  # type: ignore[arg-type]

    run(main())


def test_an_idle_client_lets_go_of_the_session() -> None:
    """A tcp2pool rides on poold's session only (never a client's own one) and, with no stream
    open, holds no descriptor of it (check() drops it); nor once poold lets go of it."""
    from pooltools.bridge import cli
    from pooltools.kernel.fakedevice import FakeDevice

    async def main() -> None:
        dev = FakeDevice()
        key = b"B" * 32
        dev.peer_add(key, "node2")
        own = dev.inbound(key)  # a client's own session, older: not poold's
        own_fd = dev.attach(own.index)
        st = dev.inbound(key)
        holder = dev.attach(st.index)  # poold's descriptor
        poolds = {(st.index, st.established_ns)}
        client = cli.Client(dev, held=lambda: poolds)
        mux = client.mux_for(key)
        assert mux is not None and st.fds == 2 and own.fds == 1, "the client took a session poold does not hold"
        client.check()
        assert client.muxes == {} and st.fds == 1, "an idle client kept its descriptor"
        mux = client.mux_for(key)
        assert mux is not None
        mux.streams[1] = object()  # type: ignore[assignment]  # a stream open: the session is in use
        mux._drop = lambda stream, why: None  # type: ignore[method-assign]  # (that stand-in has no transport)
        client.check()
        assert st.fds == 2, "a client in use let go of its session"
        poolds.clear()  # poold let go of it (stopped)
        client.check()
        assert client.muxes == {} and st.fds == 1, "the client kept a session poold let go of"
        assert client.mux_for(key) is None, "without poold's session the client must refuse, not take another"
        holder.close()
        own_fd.close()

    run(main())
