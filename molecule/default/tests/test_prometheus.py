"""A real Prometheus scrapes every lab node's pool_exporter (issue 17, point 2).

Debian's prometheus package is unpacked on node2 (the node on both links; nothing installed,
no service of the package started) and run for the test as a transient unit scraping
node1, node2 and node3 every 5 seconds with the alert rules of docs/alerts (PoolExporterDown's
`for` shortened from 2m to 15s so that the test sees it fire). PromQL against it then sees a
session's byte counters rise while traffic flows, a closed session's series vanish, every
query of the Grafana dashboard (docs/grafana) return data, and PoolExporterDown fire for a node
whose exporter is stopped. The unit, its files and the stopped exporter are put back after.
"""

from __future__ import annotations

import json
import shlex
import time
import uuid
from pathlib import Path

import pytest
import testinfra
from lab_queries import EXPORTER_PORT, http_get, lab_nodes, poolctl

testinfra_hosts = ["node2"]

REPO = Path(__file__).resolve().parents[3]
TEST_CHANNEL = 244  # a channel (0-255) nothing else uses
WORK = "/var/tmp/pool-test-prometheus"
UNIT = "pool-test-prometheus"
API = "http://127.0.0.1:9090"


def target(node: testinfra.host.Host) -> str:
    return f"{node.backend.get_variables()['pool_lab_ipv4']}:{EXPORTER_PORT}"


def api(host, path: str, expr: str | None = None) -> dict:
    status, body = http_get(host.check_output, f"{API}{path}", expr)
    doc = json.loads(body)
    assert status == 200 and doc["status"] == "success", (status, doc)
    return doc["data"]


def query(host, expr: str) -> list[dict]:
    return api(host, "/api/v1/query", expr)["result"]


def wait_for(what: str, predicate, timeout: float = 120, step: float = 3):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(step)


@pytest.fixture(scope="module")
def prometheus(host):
    """Prometheus on node2, scraping every node; stopped and removed after the module."""
    all_nodes = lab_nodes(host)
    config = {
        "global": {"scrape_interval": "5s", "evaluation_interval": "5s"},
        "rule_files": [f"{WORK}/pool-alerts.yml"],
        "scrape_configs": [
            {"job_name": "pool", "static_configs": [{"targets": [target(n) for n in all_nodes.values()]}]}
        ],
    }
    rules = (REPO / "docs" / "alerts" / "pool-alerts.yml").read_text()
    assert "    for: 2m\n" in rules.split("alert: PoolExporterDown", 1)[1].split("alert:", 1)[0]
    head, tail = rules.split("alert: PoolExporterDown", 1)
    rules = head + "alert: PoolExporterDown" + tail.replace("for: 2m", "for: 15s", 1)
    setup = f"""set -e
rm -rf {WORK}; mkdir -p {WORK}/data; cd {WORK}
apt-get download prometheus >/dev/null 2>&1 || {{ echo 'apt-get download prometheus failed' >&2; exit 1; }}
dpkg-deb -x prometheus_*.deb root
printf '%s' {shlex.quote(json.dumps(config))} > prometheus.yml
printf '%s' {shlex.quote(rules)} > pool-alerts.yml
systemd-run --unit={UNIT} --collect --property=WorkingDirectory={WORK} {WORK}/root/usr/bin/prometheus \
  --config.file={WORK}/prometheus.yml --storage.tsdb.path={WORK}/data --web.listen-address=127.0.0.1:9090
"""
    host.run(f"systemctl stop {UNIT}")
    done = host.run(f"bash -c {shlex.quote(setup)}")
    assert done.rc == 0, done.stderr
    try:
        wait_for(
            "Prometheus to scrape every node",
            lambda: (
                len(query(host, 'up{job="pool"} == 1')) == len(all_nodes)
                if http_get(host.check_output, f"{API}/-/ready")[0] == 200
                else False
            ),
            timeout=180,
        )
        yield all_nodes
    finally:
        for node in all_nodes.values():
            node.run("systemctl start pool-exporter")
        host.run(f"systemctl stop {UNIT}; rm -rf {WORK}")


def test_every_node_is_scraped(host, prometheus):
    up = {r["metric"]["instance"]: r["value"][1] for r in query(host, 'up{job="pool"}')}
    assert up == {target(n): "1" for n in prometheus.values()}
    versions = query(host, 'count by (version) (pool_module_info{job="pool"})')
    assert [r["value"][1] for r in versions] == [str(len(prometheus))], f"one pool.ko version on every node: {versions}"


def test_byte_counters_rise_while_traffic_flows(host, prometheus):
    node1 = prometheus["node1"]
    node2_key = poolctl(host.check_output, "identity", "show")["public_key"]
    instance = target(node1)
    expr = f'sum(pool_session_sent_bytes_total{{instance="{instance}",public_key="{node2_key}"}})'

    def scraped() -> float:
        result = query(host, expr)
        return float(result[0]["value"][1]) if result else 0.0

    before = scraped()
    message = f"prometheus-{uuid.uuid4().hex}" * 1000
    sent = 0
    for _ in range(5):
        poolctl(node1.check_output, "send", "--peer", "node2", "--channel", str(TEST_CHANNEL), message)
        got = poolctl(host.check_output, "recv", "--peer", "node1", "--channel", str(TEST_CHANNEL), "--timeout", "15")
        assert not got.get("closed")
        sent += len(message)
    after = wait_for("the sent bytes to rise in Prometheus", lambda: scraped() >= before + sent and scraped())
    assert after >= before + sent
    rate = query(host, f"rate({expr.removeprefix('sum(').removesuffix(')')}[1m])")
    assert rate and float(rate[0]["value"][1]) > 0, f"no rate while traffic flowed: {rate}"


def test_a_closed_session_vanishes(host, prometheus):
    node1 = prometheus["node1"]
    node2_key = poolctl(host.check_output, "identity", "show")["public_key"]
    live = [s for s in poolctl(node1.check_output, "sessions")["sessions"]
            if s["peer_public_key"] == node2_key and s["state"] == "established"]  # fmt: skip
    assert live, "node1 has no established session with node2"
    index = str(live[0]["index"])
    selector = f'pool_session_info{{instance="{target(node1)}",session="{index}"}}'
    wait_for(f"session {index} in Prometheus", lambda: query(host, selector))
    poolctl(node1.check_output, "close", index)
    wait_for(f"session {index} to vanish from Prometheus", lambda: not query(host, selector))
    # poold brings a new session up; the fleet is as it was
    wait_for(
        "a new session between node1 and node2",
        lambda: query(
            host, f'pool_session_info{{instance="{target(node1)}",public_key="{node2_key}",state="established"}}'
        ),
    )


def test_every_dashboard_query_returns_data(host, prometheus):
    dashboard = json.loads((REPO / "docs" / "grafana" / "pool-dashboard.json").read_text())
    targets = [(p["title"], t["expr"]) for p in dashboard["panels"] for t in p["targets"]]
    assert targets
    # rates need two scrapes inside their window
    wait_for("two scrapes of every node", lambda: query(host, 'count_over_time(up{job="pool"}[1m]) >= 2'))
    empty = [title for title, expr in targets if not query(host, expr)]
    assert not empty, f"panels without data: {empty}"


def test_exporter_down_alert_fires(host, prometheus):
    node3 = prometheus["node3"]
    instance = target(node3)
    node3.check_output("systemctl stop pool-exporter")
    try:

        def firing() -> list[dict]:
            alerts = api(host, "/api/v1/alerts")["alerts"]
            return [a for a in alerts if a["labels"].get("alertname") == "PoolExporterDown"
                    and a["labels"].get("instance") == instance and a["state"] == "firing"]  # fmt: skip

        alerts = wait_for("PoolExporterDown to fire for node3", firing, timeout=120)
        assert alerts[0]["labels"]["severity"] == "critical"
    finally:
        node3.check_output("systemctl start pool-exporter")
    wait_for("node3 scraped again", lambda: query(host, f'up{{instance="{instance}"}} == 1'))
