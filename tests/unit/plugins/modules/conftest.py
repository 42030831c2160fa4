"""Module tests run the modules as on a target host.

Importing any controller code (a filter plugin's test imports ``ansible.errors``) sets
ansible-core's ``is_controller`` flag for the whole pytest process, and modules then send
their warnings to the controller's display instead of returning them in the result.
"""

from __future__ import annotations

import pytest
from ansible.module_utils import _internal


@pytest.fixture(autouse=True)
def as_on_the_target(monkeypatch):
    monkeypatch.setattr(_internal, "is_controller", False)
