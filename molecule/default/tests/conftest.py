"""Test order for the default scenario: the key rotation after every other test (it changes node2's
identity for good), and the kernel log checks last, after everything that could have made pool.ko
misbehave."""

from __future__ import annotations


def pytest_configure(config):
    config.addinivalue_line("markers", "kernel_log: reads the nodes' kernel logs; runs after every other test")
    config.addinivalue_line(
        "markers", "rotation: changes a node's key for good; runs after every other test but kernel_log"
    )


def pytest_collection_modifyitems(session, config, items):
    items.sort(key=lambda item: (item.get_closest_marker("kernel_log") is not None,
                                 item.get_closest_marker("rotation") is not None))  # fmt: skip
