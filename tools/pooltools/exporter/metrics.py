"""pool.ko's state as Prometheus metric families, read on every scrape.

Names follow Prometheus' rules: one `pool_` prefix, base units (seconds, bytes, ratios),
counters ending in `_total`, events as Unix timestamps. Series carry a peer's public key, never
its name: `pool_peer_info` joins names and endpoints to the key.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric

from pooltools.kernel import uapi
from pooltools.kernel.netaddr import format_endpoint
from pooltools.kernel.views import key_or_none, state_name
from pooltools.protocol.keys import encode_key

MODULE_DIR = Path("/sys/module/pool")

# Statistics (uapi.Stat, lower case) exported as node-wide counters: name, help.
COUNTERS = {
    "handshakes_initiated": ("pool_handshakes_initiated", "Handshakes this node started."),
    "handshakes_completed": ("pool_handshakes_completed", "Handshakes that ended in a session."),
    "handshakes_failed": ("pool_handshakes_failed", "Handshakes that ended without a session."),
    "sessions_opened": ("pool_sessions_opened", "Sessions established."),
    "sessions_closed": ("pool_sessions_closed", "Sessions ended."),
    "peers_dead": ("pool_peer_deaths", "Sessions ended because the peer stopped answering heartbeats."),
    "rekeys": ("pool_rekeys", "Session rekeys."),
    "packets_sent": ("pool_sent_packets", "Packets sent on all sessions."),
    "packets_recv": ("pool_received_packets", "Packets received on all sessions."),
    "bytes_sent": ("pool_sent_bytes", "Payload bytes sent on all sessions."),
    "bytes_recv": ("pool_received_bytes", "Payload bytes received on all sessions."),
    "config_applied": ("pool_config_applied", "Configuration versions applied."),
    "config_confirmed": ("pool_config_confirmed", "Configuration versions confirmed."),
    "config_rolled_back": ("pool_config_rolled_back", "Configuration versions rolled back."),
}
# Handshakes refused before a session, by reason (statistic -> reason label).
REFUSALS = {
    "auth_fail": "auth_failed",
    "unknown_peer": "unknown_peer",
    "bad_puzzle": "bad_puzzle",
    "stale_timestamp": "stale_timestamp",
    "replayed_init": "replayed_init",
    "bad_hmac": "bad_mac",
    "overload": "overload",
    "halfopen_limited": "half_open_limit",
    "halfopen_silent": "half_open_silent",
}
# Received packets dropped, by reason.
DROPS = {"replay_drop": "replay", "decrypt_fail": "decrypt_failed", "malformed": "malformed"}

SESSION_LABELS = ["session", "public_key"]


def read_module_file(name: str, module_dir: Path = MODULE_DIR) -> str:
    try:
        return (module_dir / name).read_text().strip()
    except OSError:
        return ""


class PoolCollector:
    """A prometheus_client collector over a device (pooltools.kernel.device.Device or its fake).

    device_factory opens the device for one scrape; it and every read may raise PoolError, which
    the HTTP side turns into a 500 naming the cause.
    """

    def __init__(self, device_factory: Callable[[], Any], module_dir: Path = MODULE_DIR) -> None:
        self.device_factory = device_factory
        self.module_dir = module_dir

    def describe(self) -> list[Metric]:
        # Registration must not touch the device (the module may be loaded later).
        return []

    def collect(self) -> Iterator[Metric]:
        with self.device_factory() as dev:
            stats = dev.stats()
            sessions = dev.sessions()
            peers = dev.peers()
            config = dev.config_get()
            journal = dev.journal_head()
            identity = dev.get_identity()
        yield from self._module()
        yield from self._node(stats, identity)
        yield from self._peers(peers)
        yield from self._sessions(sessions)
        yield from self._config(config)
        yield from self._journal(journal)

    def _module(self) -> Iterator[Metric]:
        info = InfoMetricFamily("pool_module", "The loaded pool.ko.", labels=["version", "srcversion"])
        info.add_metric([], {"version": read_module_file("version", self.module_dir),
                             "srcversion": read_module_file("srcversion", self.module_dir)})  # fmt: skip
        yield info
        # pool.ko runs its known-answer self-tests at load and refuses to load when one fails.
        passed = GaugeMetricFamily("pool_module_selftest_passed", "1 when the loaded pool.ko passed its self-tests.")
        passed.add_metric([], 1)
        yield passed

    def _node(self, stats: dict[str, int], identity: uapi.PoolIdentity) -> Iterator[Metric]:
        for stat, (name, doc) in COUNTERS.items():
            family = CounterMetricFamily(name, doc)
            family.add_metric([], stats.get(stat, 0))
            yield family
        refusals = CounterMetricFamily("pool_handshake_refusals", "Handshakes refused, by reason.", labels=["reason"])
        for stat, reason in REFUSALS.items():
            refusals.add_metric([reason], stats.get(stat, 0))
        yield refusals
        drops = CounterMetricFamily("pool_dropped_packets", "Received packets dropped, by reason.", labels=["reason"])
        for stat, reason in DROPS.items():
            drops.add_metric([reason], stats.get(stat, 0))
        yield drops
        listening = GaugeMetricFamily("pool_listening", "1 when pool.ko accepts sessions.")
        listening.add_metric([], 1 if stats.get("listening") else 0)
        yield listening
        node = InfoMetricFamily("pool_node", "This node's identity and listener.", labels=["public_key", "port"])
        is_set = bool(identity.flags & uapi.POOL_IDENTITY_SET)
        node.add_metric([], {"public_key": encode_key(bytes(identity.public_key)) if is_set else "",
                             "port": str(stats.get("listen_port", 0)) if stats.get("listening") else ""})  # fmt: skip
        yield node

    def _peers(self, peers: list[uapi.PoolPeer]) -> Iterator[Metric]:
        info = InfoMetricFamily("pool_peer", "A trusted peer: its name and endpoint.", labels=["public_key"])
        failures = CounterMetricFamily(
            "pool_peer_auth_failures", "Handshakes with the peer that failed authentication.", labels=["public_key"]
        )
        last = GaugeMetricFamily(
            "pool_peer_last_handshake_timestamp_seconds", "When the peer's last handshake completed.",
            labels=["public_key"],
        )  # fmt: skip
        for p in peers:
            key = encode_key(bytes(p.public_key))
            info.add_metric([key], {"name": p.name.decode(errors="replace"),
                                    "endpoint": format_endpoint(bytes(p.endpoint_addr), p.endpoint_port) or ""})  # fmt: skip
            failures.add_metric([key], p.auth_failures)
            if p.last_handshake_ns:
                last.add_metric([key], p.last_handshake_ns / 1e9)
        yield from (info, failures, last)

    def _sessions(self, sessions: list[uapi.PoolSessionInfo]) -> Iterator[Metric]:
        by_state = GaugeMetricFamily("pool_sessions", "Sessions, by state.", labels=["state"])
        counts = {s.name.lower(): 0 for s in uapi.SessionState}
        for s in sessions:
            counts[state_name(s.state)] = counts.get(state_name(s.state), 0) + 1
        for state, n in counts.items():
            by_state.add_metric([state], n)
        yield by_state

        def gauge(name: str, doc: str) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, doc, labels=SESSION_LABELS)

        def counter(name: str, doc: str) -> CounterMetricFamily:
            return CounterMetricFamily(name, doc, labels=SESSION_LABELS)

        info = InfoMetricFamily("pool_session", "A session: its state and role.", labels=SESSION_LABELS)
        sent_bytes = counter("pool_session_sent_bytes", "Payload bytes sent on the session.")
        recv_bytes = counter("pool_session_received_bytes", "Payload bytes received on the session.")
        sent_packets = counter("pool_session_sent_packets", "Packets sent on the session.")
        recv_packets = counter("pool_session_received_packets", "Packets received on the session.")
        dropped = counter("pool_session_dropped_packets", "Packets of the session dropped.")
        rekeys = counter("pool_session_rekeys", "Rekeys of the session.")
        rtt = gauge("pool_session_rtt_seconds", "Smoothed round-trip time of the session's heartbeats.")
        jitter = gauge("pool_session_jitter_seconds", "Round-trip time variation of the session's heartbeats.")
        loss = gauge("pool_session_loss_ratio", "Share of the session's heartbeats lost (0 to 1).")
        established = gauge("pool_session_established_timestamp_seconds", "When the session was established.")
        for s in sessions:
            labels = [str(s.index), key_or_none(bytes(s.peer_public_key)) or ""]
            info.add_metric(labels, {"state": state_name(s.state), "role": "initiator"
                                     if s.role == uapi.POOL_ROLE_INITIATOR else "responder"})  # fmt: skip
            sent_bytes.add_metric(labels, s.bytes_sent)
            recv_bytes.add_metric(labels, s.bytes_recv)
            sent_packets.add_metric(labels, s.packets_sent)
            recv_packets.add_metric(labels, s.packets_recv)
            dropped.add_metric(labels, s.dropped)
            rekeys.add_metric(labels, s.local.rekey_count)
            rtt.add_metric(labels, s.local.rtt_ns / 1e9)
            jitter.add_metric(labels, s.local.jitter_ns / 1e9)
            loss.add_metric(labels, s.local.loss_rate_ppm / 1e6)
            if s.established_ns:
                established.add_metric(labels, s.established_ns / 1e9)
        yield from (info, sent_bytes, recv_bytes, sent_packets, recv_packets, dropped, rekeys, rtt, jitter, loss,
                    established)  # fmt: skip

    def _config(self, c: uapi.PoolConfig) -> Iterator[Metric]:
        tentative = bool(c.flags & uapi.POOL_CONFIG_TENTATIVE)
        version = GaugeMetricFamily("pool_config_version", "The running configuration version (0: the module's own).")
        version.add_metric([], c.version)
        yield version
        pending = GaugeMetricFamily("pool_config_tentative", "1 while the running version waits for its confirmation.")
        pending.add_metric([], 1 if tentative else 0)
        yield pending
        deadline = GaugeMetricFamily(
            "pool_config_deadline_timestamp_seconds",
            "When pool.ko rolls the tentative version back unless it is confirmed (absent when none is tentative).",
        )
        if tentative and c.deadline_ns:
            deadline.add_metric([], c.deadline_ns / 1e9)
        yield deadline

    def _journal(self, journal: Any) -> Iterator[Metric]:
        held = GaugeMetricFamily("pool_journal_entries", "Journal entries pool.ko holds (its ring keeps the newest).")
        held.add_metric([], journal.next_seq - journal.first_seq)
        yield held
        head = GaugeMetricFamily("pool_journal_head_sequence", "Sequence number of the newest journal entry.")
        head.add_metric([], max(journal.next_seq - 1, 0))
        yield head
        info = InfoMetricFamily("pool_journal_head", "Hash of the newest journal entry (the chain's head).")
        info.add_metric([], {"hash": bytes(journal.head_hash).hex()})
        yield info
