"""Test order for the default scenario: the kernel log checks last, after everything that
could have made pool.ko misbehave."""

from __future__ import annotations


def pytest_configure(config):
    config.addinivalue_line("markers", "kernel_log: reads the nodes' kernel logs; runs after every other test")


def pytest_collection_modifyitems(session, config, items):
    items.sort(key=lambda item: item.get_closest_marker("kernel_log") is not None)
