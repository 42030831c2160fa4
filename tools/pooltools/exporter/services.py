"""The vault's and the relay's counters as metric families, from their status files.

pool_vault serve and pool_relay start write a status file every 5 seconds (docs/vault.md
section 7, docs/relay.md section 7); systemd removes it with the service's runtime folder when
the service stops. A missing file means the service does not run here: no series. A file that
cannot be read, or that was not rewritten within FRESH_SECONDS, gives `pool_<service>_up 0`
and the counters it last held, so an alert sees a hung service rather than silence.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric

from pooltools.exporter.cli import RELAY_STATUS, VAULT_STATUS

FRESH_SECONDS = 30.0  # six missed writes

log = logging.getLogger(__name__)


def read_status(path: Path) -> tuple[dict[str, Any] | None, float | None] | None:
    """None when there is no file; else (the document or None when it is not a JSON object,
    the file's modification time or None when it cannot be had)."""
    try:
        mtime: float | None = path.stat().st_mtime
    except FileNotFoundError:
        return None
    except OSError:
        mtime = None
    try:
        doc = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None  # removed between the two reads: the service stopped
    except (OSError, ValueError) as exc:
        log.warning("status file %s unreadable: %s", path, exc)
        return None, mtime
    if not isinstance(doc, dict):
        log.warning("status file %s: not a JSON object", path)
        return None, mtime
    return doc, mtime


def _number(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def _object(doc: dict[str, Any], key: str) -> dict[str, Any]:
    """doc[key] when it is a JSON object, else empty (a field of the wrong type loses its series only)."""
    value = doc.get(key)
    return value if isinstance(value, dict) else {}


def _scalars(kind: type, source: dict[str, Any], rows: tuple[tuple[str, str, str], ...]) -> Iterator[Metric]:
    """One unlabelled family per (name, key in source, help) row."""
    for name, key, help_text in rows:
        family = kind(name, help_text)
        family.add_metric([], _number(source.get(key)))
        yield family


def _by_label(name: str, doc: str, label: str, values: Any, kind: type = CounterMetricFamily) -> Metric:
    family = kind(name, doc, labels=[label])
    for key, value in sorted(values.items()) if isinstance(values, dict) else ():
        family.add_metric([str(key)], _number(value))
    return family


class ServicesCollector:
    """Metrics of the vault and the relay on this node, read on every scrape."""

    def __init__(
        self,
        vault_status: Path = VAULT_STATUS,
        relay_status: Path = RELAY_STATUS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.vault_status, self.relay_status, self.clock = vault_status, relay_status, clock

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        for service, path, metrics in (("vault", self.vault_status, vault_metrics),
                                       ("relay", self.relay_status, relay_metrics)):  # fmt: skip
            status = read_status(path)
            if status is None:
                continue
            doc, mtime = status
            up = GaugeMetricFamily(
                f"pool_{service}_up", f"1 when pool_{service}'s status file is readable and fresh (at most "
                f"{FRESH_SECONDS:g} s old)."
            )  # fmt: skip
            fresh = doc is not None and mtime is not None and self.clock() - mtime <= FRESH_SECONDS
            up.add_metric([], 1 if fresh else 0)
            yield up
            if mtime is not None:
                written = GaugeMetricFamily(
                    f"pool_{service}_status_timestamp_seconds", f"When pool_{service} last wrote its status file."
                )
                written.add_metric([], mtime)
                yield written
            if doc is not None:
                yield from metrics(doc)


def vault_metrics(doc: dict[str, Any]) -> Iterator[Metric]:
    info = InfoMetricFamily("pool_vault", "The running pool_vault server.", labels=["version"])
    info.add_metric([], {"version": str(doc.get("version", ""))})
    yield info
    yield from _scalars(GaugeMetricFamily, doc, (
        ("pool_vault_acl_version", "acl_version", "Version of the vault's ACL."),
        ("pool_vault_enrolled_peers", "peers_enrolled", "Peers enrolled in the vault's ACL."),
        ("pool_vault_conversations", "conversations", "Sessions the vault is talking on."),
        ("pool_vault_active_transfers", "transfers_active", "Pushes and pulls in progress."),
    ))  # fmt: skip
    yield from _scalars(GaugeMetricFamily, _object(doc, "limits"), (
        ("pool_vault_max_file_size_bytes", "max_file_size", "Largest file the vault takes."),
        ("pool_vault_max_transfers_per_peer", "max_transfers_per_peer", "Transfers one peer may have open."),
    ))  # fmt: skip
    yield _by_label("pool_vault_requests", "Requests the vault served, by operation.", "op", doc.get("requests"))
    yield _by_label("pool_vault_refusals", "Requests the vault refused, by error code.", "code", doc.get("refusals"))
    yield from _scalars(CounterMetricFamily, doc, (
        ("pool_vault_received_bytes", "bytes_received", "File bytes received in pushed blocks."),
        ("pool_vault_sent_bytes", "bytes_sent", "File bytes sent in pulled blocks."),
    ))  # fmt: skip
    transfers = CounterMetricFamily("pool_vault_transfers", "Transfers ended, by operation and outcome.",
                                    labels=["op", "outcome"])  # fmt: skip
    for op, outcome, key in (("push", "completed", "pushes_completed"), ("push", "interrupted", "pushes_interrupted"),
                             ("pull", "completed", "pulls_completed")):  # fmt: skip
        transfers.add_metric([op, outcome], _number(doc.get(key)))
    yield transfers


def relay_metrics(doc: dict[str, Any]) -> Iterator[Metric]:
    enabled = GaugeMetricFamily("pool_relay_enabled", "1 when this node relays for others.")
    enabled.add_metric([], 1 if doc.get("relay") is True else 0)
    yield enabled
    yield from _scalars(GaugeMetricFamily, doc, (
        ("pool_relay_enrolment_version", "enrolment_version", "Version of the relay's enrolment file."),
    ))  # fmt: skip
    yield from _scalars(GaugeMetricFamily, _object(doc, "limits"), (
        ("pool_relay_connections_limit", "connections", "Relayed connections this node carries at most."),
        ("pool_relay_total_rate_limit_bytes_per_second", "total_bytes_per_second", "Cap on all relayed bytes."),
        ("pool_relay_peer_rate_limit_bytes_per_second", "peer_bytes_per_second", "Cap on one peer's relayed bytes."),
    ))  # fmt: skip
    current = GaugeMetricFamily("pool_relay_connections", "Relayed connections now, by this node's role.",
                                labels=["role"])  # fmt: skip
    carried = doc.get("carried") if isinstance(doc.get("carried"), list) else []
    for role in ("source", "relay", "destination"):
        current.add_metric([role], sum(1 for c in carried if isinstance(c, dict) and c.get("role") == role))
    yield current
    counters = _object(doc, "counters")
    yield _by_label("pool_relay_connections_started", "Relayed connections started, by this node's role.", "role",
                    counters.get("connections"))  # fmt: skip
    yield _by_label("pool_relay_carried_bytes", "Bytes of relayed connections, both directions, by this node's role.",
                    "role", counters.get("carried_bytes"))  # fmt: skip
    yield _by_label("pool_relay_refusals", "Relay requests this node refused, by error code.", "code",
                    counters.get("refusals"))  # fmt: skip
    yield from _relay_peers(doc.get("peers") if isinstance(doc.get("peers"), list) else [])


def _relay_peers(peers: list[Any]) -> Iterator[Metric]:
    labels = ["public_key"]
    contributed = GaugeMetricFamily("pool_relay_peer_contributed_bytes",
                                    "Bytes the peer relayed for this node, in the ledger's window.", labels=labels)  # fmt: skip
    consumed = GaugeMetricFamily("pool_relay_peer_consumed_bytes",
                                 "Bytes this node relayed for the peer, in the ledger's window.", labels=labels)  # fmt: skip
    score = GaugeMetricFamily("pool_relay_peer_score", "The peer's reciprocity score (docs/relay.md section 6).",
                              labels=labels)  # fmt: skip
    tier = GaugeMetricFamily("pool_relay_peer_tier", "1 for the peer's forwarding tier.", labels=[*labels, "tier"])
    channel = GaugeMetricFamily("pool_relay_peer_channel_up", "1 while the relay control channel with the peer is open.",
                                labels=labels)  # fmt: skip
    for p in peers:
        if not isinstance(p, dict) or not isinstance(p.get("key"), str):
            continue
        key = [p["key"]]
        contributed.add_metric(key, _number(p.get("contributed")))
        consumed.add_metric(key, _number(p.get("consumed")))
        score.add_metric(key, _number(p.get("score")))
        if isinstance(p.get("tier"), str):
            tier.add_metric([*key, p["tier"]], 1)
        channel.add_metric(key, 1 if p.get("channel") is True else 0)
    yield from (contributed, consumed, score, tier, channel)
