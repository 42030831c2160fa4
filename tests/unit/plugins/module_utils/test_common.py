"""module_utils.common: correcting a file's mode and owner."""

from __future__ import annotations

import os

from ansible_collections.pool.ops.plugins.module_utils.common import correct_attributes


def test_only_what_drifted_is_reported_and_check_mode_changes_nothing(tmp_path):
    path = tmp_path / "f"
    path.write_text("x")
    path.chmod(0o644)
    me = (os.geteuid(), os.getegid())
    assert correct_attributes(str(path), 0o644, me) == []
    assert correct_attributes(str(path), 0o600, me, check=True) == [("mode", "0644", "0600")]
    assert path.stat().st_mode & 0o7777 == 0o644
    assert correct_attributes(str(path), 0o600, me) == [("mode", "0644", "0600")]
    assert path.stat().st_mode & 0o7777 == 0o600
    other = (me[0] + 1, me[1])
    assert correct_attributes(str(path), 0o600, other, check=True) == [
        ("owner", f"{me[0]}:{me[1]}", f"{other[0]}:{other[1]}")
    ]
