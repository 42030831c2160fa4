"""The rollout benchmark's reading of ansible-runner events, its report and its arguments."""

from __future__ import annotations

from pathlib import Path

import bench_rollout
import pytest


def ok(action: str, host: str, res: dict, task: str = "t", event: str = "runner_on_ok") -> dict:
    return {"event": event, "event_data": {"task_action": action, "host": host, "task": task, "res": res}}


def test_builds_counts_each_kernel_once_across_loop_items():
    events = [
        # the per-item events of a loop repeat what its runner_on_ok carries under 'results'
        ok("pool.ops.kmod_package", "localhost", {"built": ["6.1.0-57-amd64"]}, event="runner_item_on_ok"),
        ok("pool.ops.kmod_package", "localhost", {"results": [
            {"built": ["6.1.0-57-amd64"]}, {"built": ["6.12.118+deb13-amd64"]}, {"skipped": True, "built": ["x"]}]}),
        ok("pool.ops.kmod", "node1", {"built": []}),
        ok("ansible.builtin.command", "node1", {"built": ["not a build"]}),
        ok("pool.ops.kmod", "node2", {"built": ["6.1.0-57-amd64"]}, event="runner_on_failed"),
    ]  # fmt: skip
    assert bench_rollout.builds(events) == [
        {"kernel": "6.1.0-57-amd64", "host": "localhost", "where": "build host"},
        {"kernel": "6.12.118+deb13-amd64", "host": "localhost", "where": "build host"},
    ]


def test_builds_by_dkms_are_one_per_node():
    events = [ok("pool.ops.kmod", n, {"built": [k]}) for n, k in (("node1", "a"), ("node2", "a"), ("node3", "b"))]
    assert [(b["host"], b["where"]) for b in bench_rollout.builds(events)] == [
        ("node1", "node"), ("node2", "node"), ("node3", "node")]  # fmt: skip


def test_changed_tasks_names_task_and_host():
    events = [ok("a", "node1", {"changed": False}), ok("b", "node2", {"changed": True}, task="Install"),
              {"event": "runner_on_skipped", "event_data": {"res": {"changed": True}}}]  # fmt: skip
    assert bench_rollout.changed_tasks(events) == ["Install on node2"]


def results() -> dict:
    kernels = {"node1": "6.1.0-57-amd64", "node2": "6.1.0-57-amd64", "node3": "6.12.118+deb13-amd64"}
    return {
        "dkms": {"seconds": 1000.0, "kernels": kernels,
                 "builds": [{"kernel": k, "host": h, "where": "node"} for h, k in kernels.items()]},
        "package": {"seconds": 400.0, "kernels": kernels,
                    "builds": [{"kernel": k, "host": "localhost", "where": "build host"}
                               for k in sorted(set(kernels.values()))]},
        "no_op": {"site_seconds": 90.0, "one_task_seconds": 6.0, "runs": 3},
    }  # fmt: skip


def test_report_gives_ratios_against_the_same_run_baselines():
    text = bench_rollout.report(results())
    assert "3 fresh nodes, 2 kernel releases (6.1.0-57-amd64, 6.12.118+deb13-amd64)" in text
    assert [line.split()[-3:] for line in text.splitlines() if "DKMS (baseline)" in line or "+ package  " in line] == [
        ["1000.0", "3", "1.00"], ["400.0", "2", "0.40"]]  # fmt: skip
    assert "builds per kernel release, build host: 1.00 (expected 1)" in text
    assert "site.yml again, nothing changed" in text and text.rstrip().splitlines()[-2].split()[-1] == "15.00"
    assert "builds, node-local DKMS: 6.1.0-57-amd64 on node1, 6.1.0-57-amd64 on node2" in text
    assert (
        "builds, build host + package: 6.1.0-57-amd64 on the build host, 6.12.118+deb13-amd64 on the build host" in text
    )


def test_runs_below_one_is_refused(capsys):
    with pytest.raises(SystemExit) as exc:
        bench_rollout.main(["--runs", "0"])
    assert exc.value.code == 2
    assert "--runs is 0: give 1 or more" in capsys.readouterr().err


def test_a_lab_that_is_up_is_not_taken_down(monkeypatch, capsys):
    monkeypatch.setattr(bench_rollout.pool_lab, "State", type("S", (), {"load": staticmethod(lambda rd: object())}))
    taken = []
    monkeypatch.setattr(bench_rollout, "lab", lambda *a: taken.append(a))
    assert bench_rollout.main([]) == 1
    assert taken == []
    assert "is up: this benchmark boots fresh nodes" in capsys.readouterr().err


class FakeRun:
    def __init__(self, events: list[dict], status: str = "successful", rc: int = 0) -> None:
        self.events, self.status, self.rc = events, status, rc


def test_a_run_that_matched_no_hosts_is_an_error(monkeypatch, tmp_path):
    seen = {}

    def run(**kwargs):
        seen.update(kwargs)
        return FakeRun([{"event": "playbook_on_no_hosts_matched"}, {"event": "playbook_on_stats"}])

    monkeypatch.setattr(bench_rollout.ansible_runner, "run", run)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(bench_rollout.BenchError, match=r"^site: no hosts matched in hosts[.]yml$"):
        bench_rollout.run_playbook(bench_rollout.SITE, Path("hosts.yml"), [], "site")
    # ansible-runner runs in its own folder: the inventory is given absolute
    assert seen["inventory"] == str(tmp_path / "hosts.yml")


def test_a_failed_run_names_the_failed_tasks(monkeypatch):
    failed = ok("pool.ops.kmod", "node1", {"msg": "no headers"}, task="Build", event="runner_on_failed")
    monkeypatch.setattr(bench_rollout.ansible_runner, "run", lambda **kw: FakeRun([failed], "failed", 2))
    with pytest.raises(bench_rollout.BenchError, match=r"^site: failed \(exit 2\): \['Build on node1: no headers'\]$"):
        bench_rollout.run_playbook(bench_rollout.SITE, Path("/x/hosts.yml"), [], "site")
