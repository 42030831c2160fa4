"""What the lab tests ask of a node, written once: the lab's nodes, poolctl's JSON, an HTTP GET
made on the node (the exporter, Prometheus' API), and the exporter's metrics as samples.

`run` is anything that runs a shell command on a node and returns its standard output,
failing the test when the command fails: a testinfra host's `check_output`, or a
test_transport Node's `ok` (one multiplexed SSH connection).
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable

import testinfra
from prometheus_client.parser import text_string_to_metric_families

POOLCTL = "/usr/local/sbin/poolctl"
EXPORTER_PORT = 9254

Samples = dict[str, list[tuple[dict[str, str], float]]]

# Runs on the node: GET argv[1] (with ?query=argv[2] when given); prints the status, a newline
# and the body, for any status (0 when nothing answers).
_GET = """import sys, urllib.error, urllib.parse, urllib.request
url = sys.argv[1] + ("?" + urllib.parse.urlencode({"query": sys.argv[2]}) if len(sys.argv) > 2 else "")
try:
    r = urllib.request.urlopen(url, timeout=30)
    status, body = r.status, r.read()
except urllib.error.HTTPError as e:
    status, body = e.code, e.read()
except OSError as e:  # nothing answers: status 0 and why
    status, body = 0, str(getattr(e, "reason", e)).encode()
print(status)
sys.stdout.write(body.decode())
"""


def lab_nodes(host) -> dict[str, testinfra.host.Host]:
    """Every node of the lab (the inventory group pool_nodes), by name, as testinfra hosts."""
    inventory = host.backend.ansible_inventory
    names = host.backend.get_variables()["groups"]["pool_nodes"]
    return {n: testinfra.get_host(f"ansible://{n}", ansible_inventory=inventory) for n in names}


def poolctl(run: Callable[[str], str], *args: str) -> dict:
    return json.loads(run(" ".join([POOLCTL, "--json", *map(shlex.quote, args)])))


def http_get(run: Callable[[str], str], url: str, query: str | None = None) -> tuple[int, str]:
    args = [url] + ([query] if query is not None else [])
    out = run(f"python3 -c {shlex.quote(_GET)} {' '.join(map(shlex.quote, args))}")
    status, _, body = out.partition("\n")
    return int(status), body


def exporter_url(address: str, path: str = "/metrics") -> str:
    return f"http://{address}:{EXPORTER_PORT}{path}"


def parse_samples(text: str) -> Samples:
    found: Samples = {}
    for family in text_string_to_metric_families(text if text.endswith("\n") else text + "\n"):
        for s in family.samples:
            found.setdefault(s.name, []).append((s.labels, s.value))
    return found


def exporter_samples(run: Callable[[str], str], address: str) -> Samples:
    """The node's /metrics, fetched on the node at the address Prometheus scrapes."""
    status, body = http_get(run, exporter_url(address))
    assert status == 200, f"{address}: /metrics answered {status}: {body}"
    return parse_samples(body)


def one(found: Samples, metric: str, **labels: str) -> float:
    values = [v for lab, v in found.get(metric, []) if all(lab.get(k) == x for k, x in labels.items())]
    assert len(values) == 1, f"{metric}{labels}: {found.get(metric)}"
    return values[0]
