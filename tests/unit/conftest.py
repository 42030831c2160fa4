"""Make the collection and the tools importable for every unit test.

The collection is imported as ``ansible_collections.pool.ops`` (as Ansible does),
through a link kept under .cache/collections; the tools as ``pooltools``; the lab and the
benchmark scripts by their file names.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
COLLECTIONS = REPO / ".cache" / "collections"
LINK = COLLECTIONS / "ansible_collections" / "pool" / "ops"


def _ensure_collection_link() -> None:
    if LINK.is_symlink() and LINK.resolve() == REPO:
        return
    LINK.parent.mkdir(parents=True, exist_ok=True)
    if LINK.is_symlink() or LINK.exists():
        LINK.unlink()
    LINK.symlink_to(REPO, target_is_directory=True)


_ensure_collection_link()
for path in (COLLECTIONS, REPO / "tools", REPO / "molecule" / "lab", REPO / "scripts"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))
