"""pool_test: the test protocol over TCP and over a POOL-like message transport."""

from __future__ import annotations

import json
import queue
import socket
import threading

import pytest
from pooltools.kernel import uapi
from pooltools.testing import pool_test


class LoopSession:
    """Half of an in-memory message pipe with the session fd interface pool_test uses."""

    def __init__(self, rx: queue.Queue, tx: queue.Queue, index: int = 1) -> None:
        self.rx, self.tx, self.index = rx, tx, index
        self.closed = False

    def send(self, data: bytes, channel: int | None = None) -> None:
        assert len(data) <= uapi.POOL_MAX_MESSAGE
        self.tx.put((channel, bytes(data)))

    def recv(self, channel: int = uapi.POOL_CHANNEL_ANY, timeout: float | None = None) -> tuple[int, bytes] | None:
        item = self.rx.get(timeout=timeout or 10)
        if item is None:
            return None
        assert channel in (uapi.POOL_CHANNEL_ANY, item[0])
        return item

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.tx.put(None)


def pair() -> tuple[LoopSession, LoopSession]:
    a, b = queue.Queue(), queue.Queue()
    return LoopSession(a, b), LoopSession(b, a)


def test_bulk_and_ping_over_pool_transport() -> None:
    c, s = pair()
    server = threading.Thread(target=pool_test.serve, args=(pool_test.PoolTransport(s, 7), lambda m: None, 10))
    server.start()
    t = pool_test.PoolTransport(c, 7)
    b = pool_test.bulk(t, 300_000, uapi.POOL_MAX_MESSAGE, 10)
    assert b["sha256_ok"] and b["server_bytes"] == 300_000 and b["messages"] == 5
    p = pool_test.ping(t, 20, 64, 10)
    assert p["count"] == 20 and p["rtt_us"]["min"] <= p["rtt_us"]["p50"] <= p["rtt_us"]["max"]
    t.send(pool_test.control("quit"))
    server.join(5)
    assert not server.is_alive()


def test_corruption_is_detected() -> None:
    c, s = pair()

    class Corrupt(LoopSession):
        def send(self, data: bytes, channel: int | None = None) -> None:
            if not data.startswith(pool_test.MAGIC):
                data = b"x" + data[1:]
            super().send(data, channel)

    bad = Corrupt(c.rx, c.tx)
    server = threading.Thread(target=pool_test.serve, args=(pool_test.PoolTransport(s, 7), lambda m: None, 10))
    server.start()
    b = pool_test.bulk(pool_test.PoolTransport(bad, 7), 100_000, 65519, 10)
    assert b["sha256_ok"] is False
    bad.send(pool_test.control("quit"), 7)
    server.join(5)


def test_messages_never_exceed_the_pool_maximum() -> None:
    sizes = [len(m) for m in pool_test.pattern(200_000, uapi.POOL_MAX_MESSAGE)]
    assert max(sizes) == 65519 and sum(sizes) == 200_000
    with pytest.raises(pool_test.PoolError):
        pool_test.bulk(pool_test.PoolTransport(pair()[0], 7), 10, 65536, 1)


@pytest.fixture
def tcp_server():
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(1)

    def run() -> None:
        conn, _ = ls.accept()
        pool_test.serve(pool_test.TcpTransport(conn), lambda m: None, 10)
        conn.close()

    th = threading.Thread(target=run)
    th.start()
    yield ls.getsockname()[1]
    th.join(10)
    ls.close()


def test_bench_over_tcp_json(tcp_server: int, capsys: pytest.CaptureFixture[str]) -> None:
    rc = pool_test.main(["bench", "--tcp", f"127.0.0.1:{tcp_server}", "--bytes", "2m", "--pings", "50", "--json"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    doc = json.loads(out)
    assert doc["transport"] == "tcp"
    assert doc["bulk"]["sha256_ok"] and doc["bulk"]["bytes"] == 2 * 1024 * 1024
    assert doc["bulk"]["throughput_mbit_s"] > 0
    assert doc["ping"]["count"] == 50 and set(doc["ping"]["rtt_us"]) == {"min", "mean", "p50", "p99", "max"}


def test_client_over_tcp_human(tcp_server: int, capsys: pytest.CaptureFixture[str]) -> None:
    rc = pool_test.main(["client", "--tcp", f"127.0.0.1:{tcp_server}", "--bytes", "100k", "--size", "1000"])
    out, _ = capsys.readouterr()
    assert rc == 0 and out.startswith("bulk: 102400 bytes in 103 messages of 1000") and "sha256 ok" in out


def test_usage_and_missing_module(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    assert pool_test.main(["client"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pool_test: usage: ") and err.count("\n") == 1
    rc = (
        pool_test.main(["client", "--device", str(tmp_path / "x"), "--peer", "n"])
        if False
        else pool_test.main(["--device", str(tmp_path / "x"), "client", "--peer", "n"])
    )
    assert rc == 3 and "pool.ko not loaded" in capsys.readouterr().err
    assert pool_test.main(["client", "--tcp", "127.0.0.1:1", "--bytes", "1k"]) == 10


def test_attach_to_poold_session_with_fake_device(capsys: pytest.CaptureFixture[str]) -> None:
    from pooltools.kernel.fakedevice import FakeDevice

    dev = FakeDevice()
    key = bytes([0xDE]) + bytes(31)
    dev.set_identity(bytes.fromhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"))
    dev.peer_add(key, "node2")
    st = dev.inbound(key)
    held = dev.accept()

    def respond(state, channel, data):  # a pool_test server on the other side
        doc = pool_test.parse_control(data)
        if doc and doc["op"] == "bulk":
            state.expect = doc["bytes"]
            state.h = __import__("hashlib").sha256()
            state.got = 0
        elif doc is None:
            state.h.update(data)
            state.got += len(data)
            if state.got == state.expect:
                state.rx.append((channel, pool_test.control("result", bytes=state.got, sha256=state.h.hexdigest())))

    st.responder = respond
    rc = pool_test.main(["client", "--peer", "node2", "--bytes", "150k", "--json"], lambda: dev)
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert json.loads(out)["sha256_ok"] is True
    assert {ch for ch, _ in st.sent} == {7}
    assert held.st.fds == 1  # pool_test closed its ATTACHed fd; poold's stays


def test_a_bulk_transfer_cut_short_fails_the_server(capsys: pytest.CaptureFixture[str]) -> None:
    """A client that goes away in the middle of a bulk transfer (its session ended) makes
    `pool_test server --once` fail: what arrived is not what was sent."""
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(1)
    port = ls.getsockname()[1]
    ls.close()
    rc: list[int] = []
    th = threading.Thread(target=lambda: rc.append(pool_test.main(["server", "--tcp", f"127.0.0.1:{port}", "--once"])))
    th.start()
    for _ in range(100):
        try:
            conn = socket.create_connection(("127.0.0.1", port))
            break
        except ConnectionRefusedError:
            threading.Event().wait(0.05)
    t = pool_test.TcpTransport(conn)
    t.send(pool_test.control("bulk", bytes=1 << 20))
    t.send(b"x" * 1000)
    conn.close()
    th.join(10)
    assert rc == [1]
    assert "peer went away after 1000 of 1048576 bytes" in capsys.readouterr().err
