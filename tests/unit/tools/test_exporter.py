"""pool_exporter against the FakeDevice: metric names and values, the HTTP answers, bad arguments."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from pooltools.exporter import cli
from pooltools.exporter.metrics import PoolCollector
from pooltools.exporter.server import make_server
from pooltools.kernel import uapi
from pooltools.kernel.fakedevice import FakeDevice
from pooltools.kernel.netaddr import parse_endpoint
from pooltools.protocol import x25519
from pooltools.protocol.keys import encode_key
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

TOOLS = Path(__file__).resolve().parents[3] / "tools"
PEER_PRIVATE = bytes(range(1, 33))
PEER_KEY = x25519.public_key(PEER_PRIVATE)


@pytest.fixture
def dev() -> FakeDevice:
    d = FakeDevice()
    d.set_identity(bytes(range(2, 34)))
    endpoint = parse_endpoint("10.253.0.12:9253")
    d.peer_add(PEER_KEY, "node2", endpoint.addr, endpoint.port)
    d.listen(9253)
    return d


@pytest.fixture
def module_dir(tmp_path: Path) -> Path:
    (tmp_path / "version").write_text("0.1.0+abc\n")
    (tmp_path / "srcversion").write_text("ABCDEF\n")
    return tmp_path


def scrape(dev: FakeDevice, module_dir: Path) -> dict[str, list[tuple[dict[str, str], float]]]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PoolCollector(lambda: dev, module_dir))
    text = generate_latest(registry).decode()
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples.setdefault(s.name, []).append((s.labels, s.value))
    return samples


def value(samples: dict, metric: str, **labels: str) -> float:
    found = [v for lab, v in samples[metric] if all(lab.get(k) == x for k, x in labels.items())]
    assert len(found) == 1, f"{metric}{labels}: {samples.get(metric)}"
    return found[0]


def test_every_name_follows_prometheus_rules(dev: FakeDevice, module_dir: Path) -> None:
    dev.inbound(PEER_KEY)
    samples = scrape(dev, module_dir)
    for name in samples:
        assert name.startswith("pool_") and not name.startswith("pool_pool"), name
        assert "_ns" not in name and "_ms" not in name and "ppm" not in name, f"{name}: not in base units"
        assert not name.endswith("_seconds_total") or name == "pool_seconds_total"
    counters = [n for n in samples if n.endswith("_total")]
    assert "pool_sent_bytes_total" in counters and "pool_handshake_refusals_total" in counters
    # no series carries a peer's name: pool_peer_info joins it to the key
    for name, series in samples.items():
        if name != "pool_peer_info":
            assert all("name" not in labels for labels, _ in series), name


def test_module_node_and_peer_info(dev: FakeDevice, module_dir: Path) -> None:
    samples = scrape(dev, module_dir)
    assert value(samples, "pool_module_info", version="0.1.0+abc", srcversion="ABCDEF") == 1
    assert value(samples, "pool_module_selftest_passed") == 1
    assert value(samples, "pool_listening") == 1
    assert value(samples, "pool_node_info", port="9253") == 1
    key = encode_key(PEER_KEY)
    assert value(samples, "pool_peer_info", public_key=key, name="node2", endpoint="10.253.0.12:9253") == 1


def test_sessions_by_state_and_per_session_counters(dev: FakeDevice, module_dir: Path) -> None:
    st = dev.inbound(PEER_KEY)
    st.bytes_sent, st.bytes_recv = 4096, 1024
    samples = scrape(dev, module_dir)
    assert value(samples, "pool_sessions", state="established") == 1
    assert value(samples, "pool_sessions", state="handshake") == 0
    key = encode_key(PEER_KEY)
    labels = {"session": str(st.index), "public_key": key}
    assert value(samples, "pool_session_sent_bytes_total", **labels) == 4096
    assert value(samples, "pool_session_received_bytes_total", **labels) == 1024
    assert value(samples, "pool_session_rtt_seconds", **labels) == pytest.approx(250e-6)
    assert value(samples, "pool_session_info", state="established", role="responder", **labels) == 1
    assert value(samples, "pool_session_established_timestamp_seconds", **labels) == pytest.approx(
        st.established_ns / 1e9
    )
    dev.peer_close(st.index)
    samples = scrape(dev, module_dir)
    assert value(samples, "pool_sessions", state="established") == 0
    assert "pool_session_sent_bytes_total" not in samples
    assert value(samples, "pool_sessions_closed_total") == 1


def test_refusals_by_reason_and_drops(dev: FakeDevice, module_dir: Path) -> None:
    dev._stats[uapi.Stat.UNKNOWN_PEER] = 3
    dev._stats[uapi.Stat.BAD_PUZZLE] = 2
    dev._stats[uapi.Stat.REPLAY_DROP] = 5
    samples = scrape(dev, module_dir)
    assert value(samples, "pool_handshake_refusals_total", reason="unknown_peer") == 3
    assert value(samples, "pool_handshake_refusals_total", reason="bad_puzzle") == 2
    assert value(samples, "pool_handshake_refusals_total", reason="auth_failed") == 0
    assert value(samples, "pool_dropped_packets_total", reason="replay") == 5


def test_configuration_and_journal(dev: FakeDevice, module_dir: Path) -> None:
    samples = scrape(dev, module_dir)
    assert value(samples, "pool_config_version") == 0
    assert value(samples, "pool_config_tentative") == 0
    assert "pool_config_deadline_timestamp_seconds" not in samples
    head = dev.journal_read()
    assert value(samples, "pool_journal_entries") == len(head.entries)
    assert value(samples, "pool_journal_head_sequence") == head.next_seq - 1
    assert value(samples, "pool_journal_head_info", hash=head.head_hash.hex()) == 1


def test_tentative_configuration_has_a_deadline(dev: FakeDevice, module_dir: Path) -> None:
    c = dev.config_get()
    c.version, c.confirm_within_ms = 1, 60_000
    c.heartbeat_seconds, c.rekey_seconds, c.rekey_packets, c.max_sessions = 15, 120, 1 << 20, 64
    dev.config_apply(c, dev.peers())
    samples = scrape(dev, module_dir)
    assert value(samples, "pool_config_version") == 1
    assert value(samples, "pool_config_tentative") == 1
    assert value(samples, "pool_config_deadline_timestamp_seconds") == pytest.approx(dev.config_get().deadline_ns / 1e9)


@pytest.fixture
def served(dev: FakeDevice) -> Iterator[tuple[str, FakeDevice]]:
    server = make_server(("127.0.0.1", 0), lambda: dev)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", dev
    finally:
        server.shutdown()
        server.server_close()


def get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.headers["Content-Type"], r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode()


def test_http_metrics_health_and_unknown_paths(served: tuple[str, FakeDevice]) -> None:
    base, _ = served
    status, ctype, body = get(base + "/metrics")
    assert status == 200 and ctype.startswith("text/plain; version=0.0.4")
    assert 'pool_sessions{state="established"} 0.0' in body
    assert get(base + "/health") == (200, "text/plain; charset=utf-8", "ok\n")
    assert get(base + "/nothing")[0] == 404


def test_unreadable_module_answers_500_saying_why(served: tuple[str, FakeDevice]) -> None:
    base, dev = served
    dev.unload()
    status, _, body = get(base + "/metrics")
    assert status == 500 and body.startswith("cannot read pool.ko: ") and "pool_" not in body
    status, _, body = get(base + "/health")
    assert status == 500 and body.startswith("cannot read pool.ko: read statistics: ")


@pytest.mark.parametrize(
    "argv, why",
    [
        (["--listen", "9254"], "'9254' is not ADDRESS:PORT"),
        (["--listen", "localhost:9254"], "'localhost:9254' is not ADDRESS:PORT"),
        (["--listen", "127.0.0.1:70000"], "the port must be 1-65535"),
        (["--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_bad_arguments_fail_in_one_line(argv: list[str], why: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(argv, lambda: FakeDevice()) == 2
    err = capsys.readouterr().err
    assert err.startswith("pool_exporter: usage: ") and why in err and err.count("\n") == 1


def test_without_prometheus_client_it_names_debians_package() -> None:
    block = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'prometheus_client':\n"
        "            raise ModuleNotFoundError('blocked', name=name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "from pooltools.exporter import cli\n"
        "sys.exit(cli.main(['--listen', '127.0.0.1:1']))\n"
    )
    p = subprocess.run(
        [sys.executable, "-c", block], env={"PYTHONPATH": str(TOOLS), "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert p.returncode == 1, (p.stdout, p.stderr)
    assert p.stderr == "pool_exporter: needs the 'prometheus_client' package (Debian: python3-prometheus-client)\n"


# ---- the vault's and the relay's status files

VAULT_DOC = {
    "server": "pool_vault", "version": "0.1.0", "acl_version": 4, "peers_enrolled": 2, "conversations": 3,
    "transfers_active": 1, "requests": {"push": 5, "pull": 7}, "refusals": {"denied": 2},
    "bytes_received": 1000, "bytes_sent": 2000, "pushes_completed": 4, "pushes_interrupted": 1,
    "pulls_completed": 7, "limits": {"max_file_size": 1 << 30, "max_transfers_per_peer": 4},
}  # fmt: skip
RELAY_DOC = {
    "format": 1, "relay": True, "enrolment_version": 3,
    "limits": {"peer_bytes_per_second": 1000, "total_bytes_per_second": 5000, "connections": 8},
    "peers": [{"name": "node1", "key": encode_key(PEER_KEY), "channel": True, "contributed": 10, "consumed": 20,
               "score": 0.5, "tier": "balanced"}],
    "carried": [{"role": "relay"}, {"role": "relay"}, {"role": "source"}],
    "counters": {"connections": {"relay": 9}, "carried_bytes": {"relay": 123456}, "refusals": {"busy": 2}},
}  # fmt: skip


def scrape_services(tmp_path: Path, now: float | None = None) -> dict[str, list[tuple[dict[str, str], float]]]:
    from pooltools.exporter.services import ServicesCollector

    registry = CollectorRegistry(auto_describe=False)
    collector = ServicesCollector(tmp_path / "vault.json", tmp_path / "relay.json")
    if now is not None:
        collector.clock = lambda: now
    registry.register(collector)
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for s in family.samples:
            samples.setdefault(s.name, []).append((s.labels, s.value))
    return samples


def test_no_status_files_no_service_series(tmp_path: Path) -> None:
    assert scrape_services(tmp_path) == {}


def test_vault_counters_from_its_status_file(tmp_path: Path) -> None:
    (tmp_path / "vault.json").write_text(json.dumps(VAULT_DOC))
    samples = scrape_services(tmp_path)
    assert value(samples, "pool_vault_up") == 1
    assert value(samples, "pool_vault_info", version="0.1.0") == 1
    assert value(samples, "pool_vault_requests_total", op="pull") == 7
    assert value(samples, "pool_vault_refusals_total", code="denied") == 2
    assert value(samples, "pool_vault_received_bytes_total") == 1000
    assert value(samples, "pool_vault_sent_bytes_total") == 2000
    assert value(samples, "pool_vault_transfers_total", op="push", outcome="interrupted") == 1
    assert value(samples, "pool_vault_transfers_total", op="pull", outcome="completed") == 7
    assert value(samples, "pool_vault_enrolled_peers") == 2
    assert value(samples, "pool_vault_max_file_size_bytes") == 1 << 30
    assert not any(n.startswith("pool_relay_") for n in samples)


def test_relay_counters_and_saturation_inputs(tmp_path: Path) -> None:
    (tmp_path / "relay.json").write_text(json.dumps(RELAY_DOC))
    samples = scrape_services(tmp_path)
    key = encode_key(PEER_KEY)
    assert value(samples, "pool_relay_up") == 1
    assert value(samples, "pool_relay_enabled") == 1
    assert value(samples, "pool_relay_connections", role="relay") == 2
    assert value(samples, "pool_relay_connections", role="destination") == 0
    assert value(samples, "pool_relay_connections_limit") == 8
    assert value(samples, "pool_relay_total_rate_limit_bytes_per_second") == 5000
    assert value(samples, "pool_relay_carried_bytes_total", role="relay") == 123456
    assert value(samples, "pool_relay_connections_started_total", role="relay") == 9
    assert value(samples, "pool_relay_refusals_total", code="busy") == 2
    assert value(samples, "pool_relay_peer_consumed_bytes", public_key=key) == 20
    assert value(samples, "pool_relay_peer_tier", public_key=key, tier="balanced") == 1
    assert value(samples, "pool_relay_peer_channel_up", public_key=key) == 1
    for name, series in samples.items():
        assert all("name" not in labels for labels, _ in series), f"{name} names a peer"


def test_a_stale_or_broken_status_file_is_down_not_silent(tmp_path: Path) -> None:
    path = tmp_path / "relay.json"
    path.write_text(json.dumps(RELAY_DOC))
    written = path.stat().st_mtime
    stale = scrape_services(tmp_path, now=written + 31)
    assert value(stale, "pool_relay_up") == 0
    assert value(stale, "pool_relay_status_timestamp_seconds") == pytest.approx(written)
    assert value(stale, "pool_relay_carried_bytes_total", role="relay") == 123456  # what it last said
    for broken in ("{not json", "[1, 2]"):
        path.write_text(broken)
        samples = scrape_services(tmp_path)
        assert value(samples, "pool_relay_up") == 0
        assert "pool_relay_enabled" not in samples


def test_a_relay_status_without_counters_still_scrapes(tmp_path: Path) -> None:
    """A relay from before the counters, or a document with wrong types, loses those series only."""
    doc = {k: v for k, v in RELAY_DOC.items() if k != "counters"} | {"peers": "x", "limits": [1]}
    (tmp_path / "relay.json").write_text(json.dumps(doc))
    samples = scrape_services(tmp_path)
    assert value(samples, "pool_relay_up") == 1
    assert value(samples, "pool_relay_connections_limit") == 0
    assert "pool_relay_carried_bytes_total" not in samples
