"""Configuration versions: the document, its canonical form and hash, and the on-disk store.

A configuration document (JSON, docs/protocol.md section 7) holds what
POOL_IOC_CONFIG_APPLY takes: the tunables and the trust store.

    {"heartbeat_seconds": 5, "rekey_seconds": 3600, "rekey_packets": 1073741824,
     "puzzle_difficulty": 16, "max_sessions": 256,
     "peers": [{"name": "node2", "public_key": "<base64>", "endpoint": "10.253.0.12:9253"}]}

validate() checks every value against exactly what pool.ko accepts (kmod/main.c
pool_valid_params, kmod/peer.c pool_peer_validate, kmod/config.c) and raises
ConfigInvalid naming the key, so bad input is refused before anything changes.
canonical() is the hashed form: normalised values, every key present, sorted
keys, no whitespace, UTF-8; config_hash() its SHA-256 (the hash given to
CONFIG_APPLY).

Store (state_dir/config/): one file per version, `v<version, 10 digits>.json`,
written atomically (temporary file, fsync, rename, fsync of the folder),
`{"version": N, "hash": "<hex>", "created_ns": T, "origin": "...", "config": {...}}`;
the hash is checked on every read (a file that fails is an error naming it, never
used). `confirmed.json` points at the last confirmed version and remembers up to
KEEP_CONFIRMED earlier confirmed ones (the fallbacks when the newest cannot be
read); version 0 in it means "no version: pool.ko's load-time parameters and
pool.conf's peers" (an operator rolled back past the first version). The newest
50 versions are kept, and the confirmed ones it names, however old.
"""

from __future__ import annotations

import contextlib
import difflib
import fcntl
import hashlib
import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pooltools.common.fsutil import atomic_write, fsync_dir
from pooltools.kernel.netaddr import format_endpoint, parse_endpoint
from pooltools.protocol.keys import decode_key, encode_key
from pooltools.protocol.primitives import MAX_DIFFICULTY
from pooltools.protocol.x25519 import x25519

KEEP_VERSIONS = 50
KEEP_CONFIRMED = 4  # earlier confirmed versions remembered (and kept) as fallbacks
STORE_SUBDIR = "config"
CONFIRMED_FILE = "confirmed.json"
MAX_PEERS = 1024  # POOL_CONFIG_MAX_PEERS in kmod/config.c
MAX_VERSION = 2**32 - 1  # __u32 version
MAX_CONFIRM_SECONDS = 24 * 3600  # kmod/config.c: confirm_within_ms <= 24 h
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,30}")  # as pool.conf; < POOL_NAME_LEN bytes
_FILE_RE = re.compile(r"v(\d{10})\.json")

# Ranges pool.ko accepts (kmod/main.c pool_valid_params) and the module's defaults.
RANGES: dict[str, tuple[int, int]] = {
    "heartbeat_seconds": (1, 3600),
    "rekey_seconds": (5, 2**31),
    "rekey_packets": (1, 2**32 - 1),
    "puzzle_difficulty": (0, MAX_DIFFICULTY),  # POOL_MAX_DIFFICULTY
    "max_sessions": (1, 65536),
}
DEFAULTS: dict[str, int] = {
    "heartbeat_seconds": 5,
    "rekey_seconds": 3600,
    "rekey_packets": 2**30,
    "puzzle_difficulty": 16,
    "max_sessions": 256,
}
TOP_KEYS = (*RANGES, "peers")
PEER_KEYS = ("name", "public_key", "endpoint", "relays")
# Any scalar works: a low-order point gives an all-zero X25519 result (kmod/peer.c pool_key_usable).
_PROBE = bytes.fromhex("581d3a9c1764e20b934f2ac87105be36d9608e124bf729835ca10e67d43b9548")


class ConfigInvalid(ValueError):
    """A document that pool.ko would refuse; str() names the key."""

    def __init__(self, key: str, message: str) -> None:
        self.key = key
        super().__init__(f"{key}: {message}")


class StoreError(Exception):
    """The store cannot be read or written; str() names the file."""


class NotStored(StoreError):
    """The version asked for is not in the store."""


class Corrupted(StoreError):
    """A stored file fails its checks (hash, content, version): it is never used."""


def _hint(key: str, allowed: tuple[str, ...]) -> str:
    m = difflib.get_close_matches(key, allowed, n=1)
    return f" (did you mean '{m[0]}'?)" if m else f" (known: {', '.join(allowed)})"


def _int(key: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigInvalid(key, f"must be an integer, got {json.dumps(value)}")
    lo, hi = RANGES[key]
    if not lo <= value <= hi:
        raise ConfigInvalid(key, f"{value} is out of range ({lo}-{hi})")
    return value


def key_usable(key: bytes) -> bool:
    """False for the all-zero key and low-order points (pool.ko refuses them)."""
    if key == bytes(32):
        return False
    try:
        x25519(_PROBE, key)
    except ValueError:
        return False
    return True


def _peer(i: int, p: object) -> dict[str, Any]:
    where = f"peers[{i}]"
    if not isinstance(p, dict):
        raise ConfigInvalid(where, "must be an object with name, public_key and endpoint")
    for k in p:
        if k not in PEER_KEYS:
            raise ConfigInvalid(f"{where}.{k}", "unknown key" + _hint(str(k), PEER_KEYS))
    name = p.get("name")
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise ConfigInvalid(
            f"{where}.name", "required: 1-31 characters of A-Z a-z 0-9 . _ - (starting with a letter or digit)"
        )
    where = f"peers[{i}] ({name})"
    if "public_key" not in p:
        raise ConfigInvalid(f"{where}.public_key", "required")
    if not isinstance(p["public_key"], str):
        raise ConfigInvalid(f"{where}.public_key", "must be a base64 string")
    try:
        raw = decode_key(p["public_key"])
    except ValueError as exc:
        raise ConfigInvalid(f"{where}.public_key", str(exc)) from None
    if not key_usable(raw):
        raise ConfigInvalid(f"{where}.public_key", "is a low-order point (pool.ko refuses it)")
    endpoint = p.get("endpoint")
    if endpoint is not None:
        if not isinstance(endpoint, str):
            raise ConfigInvalid(f"{where}.endpoint", "must be a string 'a.b.c.d:port' or '[v6]:port', or null")
        try:
            ep = parse_endpoint(endpoint)
        except ValueError as exc:
            raise ConfigInvalid(f"{where}.endpoint", str(exc)) from None
        endpoint = format_endpoint(ep.addr, ep.port)
    out = {"name": name, "public_key": encode_key(raw), "endpoint": endpoint}
    relays = p.get("relays", [])
    if not isinstance(relays, list) or not all(isinstance(r, str) for r in relays):
        raise ConfigInvalid(f"{where}.relays", "must be a list of the names of other peers")
    if len(set(relays)) != len(relays):
        raise ConfigInvalid(f"{where}.relays", "names a relay twice")
    if relays:  # left out when empty: a document without relays keeps the hash it always had
        out["relays"] = list(relays)
    return out


def validate(doc: object, own_public_key: bytes | None = None) -> dict[str, Any]:
    """The normalised document (every key present, peers sorted by name); ConfigInvalid naming the key."""
    if not isinstance(doc, dict):
        raise ConfigInvalid("(document)", "must be a JSON object")
    for k in doc:
        if k not in TOP_KEYS:
            raise ConfigInvalid(str(k), "unknown key" + _hint(str(k), TOP_KEYS))
    out: dict[str, Any] = {k: _int(k, doc[k]) if k in doc else DEFAULTS[k] for k in RANGES}
    peers = doc.get("peers", [])
    if not isinstance(peers, list):
        raise ConfigInvalid("peers", "must be a list of {name, public_key, endpoint}")
    if len(peers) > MAX_PEERS:
        raise ConfigInvalid("peers", f"{len(peers)} peers: pool.ko takes at most {MAX_PEERS}")
    norm: list[dict[str, Any]] = []
    names: dict[str, int] = {}
    keys: dict[str, str] = {}
    for i, p in enumerate(peers):
        q = _peer(i, p)
        where = f"peers[{i}] ({q['name']})"
        if q["name"] in names:
            raise ConfigInvalid(f"{where}.name", f"duplicate name (first at peers[{names[q['name']]}])")
        if q["public_key"] in keys:
            raise ConfigInvalid(f"{where}.public_key", f"duplicate key: peer '{keys[q['public_key']]}' has it")
        if own_public_key is not None and decode_key(q["public_key"]) == own_public_key:
            raise ConfigInvalid(f"{where}.public_key", "is this node's own public key")
        names[q["name"]] = i
        keys[q["public_key"]] = q["name"]
        norm.append(q)
    for i, q in enumerate(norm):
        for relay in q.get("relays", ()):
            if relay == q["name"]:
                raise ConfigInvalid(f"peers[{i}] ({q['name']}).relays", "a peer cannot be its own relay")
            if relay not in names:
                raise ConfigInvalid(
                    f"peers[{i}] ({q['name']}).relays", f"'{relay}' is not a peer of this configuration"
                )
    out["peers"] = sorted(norm, key=lambda q: q["name"])
    return out


Routes = dict[bytes, tuple[tuple[str, bytes], ...]]


def relay_routes(cfg: dict[str, Any]) -> Routes:
    """Peer key -> its relays as (name, key), in order, for the peers of a validated document
    that name relays (docs/relay.md section 2)."""
    keys = {p["name"]: decode_key(p["public_key"]) for p in cfg["peers"]}
    return {keys[p["name"]]: tuple((r, keys[r]) for r in p["relays"]) for p in cfg["peers"] if p.get("relays")}


def parse(text: str | bytes, source: str = "config") -> dict[str, Any]:
    """Parse and validate a JSON document; ConfigInvalid (key '(document)' for bad JSON)."""
    try:
        doc = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigInvalid("(document)", f"{source} is not valid JSON: {exc}") from None
    return validate(doc)


def canonical(doc: dict[str, Any]) -> bytes:
    """The hashed form: a validated document as JSON with sorted keys, no whitespace, UTF-8."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def config_hash(doc: dict[str, Any]) -> bytes:
    return hashlib.sha256(canonical(doc)).digest()


def pretty(doc: dict[str, Any] | None) -> str:
    """Canonical pretty form (for diffs): sorted keys, 2-space indent, trailing newline."""
    if doc is None:
        return ""
    return json.dumps(doc, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def unified_diff(a: dict[str, Any] | None, b: dict[str, Any] | None, a_label: str, b_label: str) -> str:
    return "".join(
        difflib.unified_diff(pretty(a).splitlines(keepends=True), pretty(b).splitlines(keepends=True), a_label, b_label)
    )


@dataclass
class Version:
    version: int
    hash: bytes
    created_ns: int
    origin: str
    config: dict[str, Any]
    path: Path

    def summary(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "hash": self.hash.hex(),
            "created_ns": self.created_ns,
            "origin": self.origin,
            "peers": len(self.config["peers"]),
        }


class Store:
    """state_dir/config/: the last KEEP_VERSIONS versions and the confirmed pointer."""

    def __init__(self, state_dir: str | Path, keep: int = KEEP_VERSIONS) -> None:
        self.dir = Path(state_dir) / STORE_SUBDIR
        self.keep = keep

    def path(self, version: int) -> Path:
        return self.dir / f"v{version:010d}.json"

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Exclusive lock for writers (poolctl and poold may run at once)."""
        self._mkdir()
        fd = os.open(self.dir / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _mkdir(self) -> None:
        if self.dir.is_dir():
            return
        try:
            self.dir.mkdir(mode=0o750, parents=True, exist_ok=True)
            fsync_dir(self.dir.parent)  # the new folder's entry is durable before files go in it
        except OSError as exc:
            raise StoreError(f"{self.dir}: cannot create: {exc.strerror or exc}") from None

    def versions(self) -> list[int]:
        """Stored version numbers, oldest first (files are not read)."""
        try:
            names = os.listdir(self.dir)
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise StoreError(f"{self.dir}: cannot list: {exc.strerror or exc}") from None
        return sorted(int(m.group(1)) for n in names if (m := _FILE_RE.fullmatch(n)))

    def latest(self) -> int:
        v = self.versions()
        return v[-1] if v else 0

    def read(self, version: int) -> Version:
        """One stored version, its hash and content checked; StoreError naming the file otherwise."""
        path = self.path(version)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            raise NotStored(f"version {version} is not stored in {self.dir} (poolctl config history)") from None
        except OSError as exc:
            raise StoreError(f"{path}: cannot read: {exc.strerror or exc}") from None
        try:
            rec = json.loads(raw)
            if not isinstance(rec, dict):
                raise ValueError("not a JSON object")
            cfg = validate(rec["config"])
            digest = bytes.fromhex(rec["hash"])
            created, origin = int(rec.get("created_ns", 0)), str(rec.get("origin", ""))
            if rec["version"] != version:
                raise ValueError(f"records version {rec['version']}")
        except (ValueError, KeyError, TypeError) as exc:
            raise Corrupted(f"{path}: corrupted ({exc}): not used") from None
        if config_hash(cfg) != digest or canonical(cfg) != canonical(rec["config"]):
            raise Corrupted(f"{path}: corrupted (content does not match its hash {digest.hex()[:16]}...): not used")
        return Version(version, digest, created, origin, cfg, path)

    def write(self, version: int, cfg: dict[str, Any], origin: str) -> Version:
        """Store a new version atomically, then drop the oldest beyond `keep` (never the confirmed one)."""
        if not 1 <= version <= MAX_VERSION:
            raise StoreError(f"version {version} out of range (1-{MAX_VERSION})")
        self._mkdir()
        path = self.path(version)
        if path.exists():
            raise StoreError(f"{path}: version {version} already stored")
        digest = config_hash(cfg)
        rec = {"version": version, "hash": digest.hex(), "created_ns": time.time_ns(), "origin": origin, "config": cfg}
        try:
            atomic_write(path, json.dumps(rec, sort_keys=True, indent=1).encode() + b"\n", 0o640, overwrite=False)
        except OSError as exc:
            raise StoreError(f"{path}: cannot write: {exc.strerror or exc}") from None
        with contextlib.suppress(OSError):  # the new version is stored; pruning is retried at the next write
            self.prune()
        return Version(version, digest, rec["created_ns"], origin, cfg, path)

    def remove(self, version: int, sync: bool = True) -> None:
        """Drop a version that pool.ko refused (it never became active)."""
        try:
            self.path(version).unlink()
        except FileNotFoundError:
            return
        if sync:
            fsync_dir(self.dir)

    def prune(self) -> list[int]:
        """Delete the oldest versions beyond `keep`, never one the confirmed pointer names."""
        vs = self.versions()
        try:
            keep_v = {v for v, _h in self.confirmed_chain()}
        except StoreError:
            return []  # which version is confirmed is unknown: delete nothing until a confirm rewrites it
        gone = [v for v in vs[: max(0, len(vs) - self.keep)] if v not in keep_v]
        for v in gone:
            self.remove(v, sync=False)
        if gone:
            fsync_dir(self.dir)
        return gone

    # ---- the confirmed pointer
    def _pointer(self) -> dict[str, Any] | None:
        path = self.dir / CONFIRMED_FILE
        try:
            rec = json.loads(path.read_bytes())
            if not isinstance(rec, dict):
                raise ValueError("not a JSON object")
            chain = [(int(rec["version"]), bytes.fromhex(rec["hash"]))]
            for e in rec.get("earlier", []):
                chain.append((int(e["version"]), bytes.fromhex(e["hash"])))
            for v, h in chain:
                if not 0 <= v <= MAX_VERSION or len(h) != 32:
                    raise ValueError(f"version {v} with a {len(h)}-byte hash")
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise Corrupted(f"{path}: corrupted ({exc}): not used") from None
        return {"chain": chain}

    def confirmed_ref(self) -> tuple[int, bytes] | None:
        """(version, hash) of the last confirmed version, unchecked; None if none.

        Version 0 (hash all zero) means an operator rolled back past the first
        version: the confirmed state is no version at all.
        """
        p = self._pointer()
        return p["chain"][0] if p else None

    def confirmed_chain(self) -> list[tuple[int, bytes]]:
        """The last confirmed (version, hash) and the earlier confirmed ones, newest first; [] if none."""
        p = self._pointer()
        return list(p["chain"]) if p else []

    def confirmed(self) -> Version | None:
        """The last confirmed version, checked against the pointer's hash; None if none (or version 0)."""
        ref = self.confirmed_ref()
        if ref is None or ref[0] == 0:
            return None
        return self.checked(*ref)

    def checked(self, version: int, digest: bytes) -> Version:
        """Stored `version`, which must have hash `digest` (Corrupted otherwise)."""
        v = self.read(version)
        if v.hash != digest:
            raise Corrupted(
                f"{v.path}: corrupted (hash {v.hash.hex()[:16]}... differs from the {digest.hex()[:16]}... "
                f"{CONFIRMED_FILE} recorded for version {version}): not used"
            )
        return v

    def set_confirmed(self, version: int, digest: bytes) -> bool:
        """Point at version (which must be stored with that hash; 0: no version); False if it already did.

        The previous pointer moves to the front of `earlier` (at most KEEP_CONFIRMED kept).
        """
        try:
            chain = self.confirmed_chain()
        except StoreError:
            chain = []  # a corrupted pointer is replaced
        if chain and chain[0] == (version, digest):
            return False
        if version == 0:
            if digest != bytes(32):
                raise StoreError(f"version 0 has no hash (got {digest.hex()[:16]}...)")
        else:
            v = self.read(version)
            if v.hash != digest:
                raise StoreError(f"{v.path}: hash differs from the kernel's for version {version}")
        earlier: list[tuple[int, bytes]] = []
        for ref in chain:
            if ref != (version, digest) and ref not in earlier:
                earlier.append(ref)
        rec = {
            "version": version,
            "hash": digest.hex(),
            "earlier": [{"version": v, "hash": h.hex()} for v, h in earlier[:KEEP_CONFIRMED]],
        }
        doc = json.dumps(rec, sort_keys=True).encode() + b"\n"
        self._mkdir()
        try:
            atomic_write(self.dir / CONFIRMED_FILE, doc, 0o640)
        except OSError as exc:
            raise StoreError(f"{self.dir / CONFIRMED_FILE}: cannot write: {exc.strerror or exc}") from None
        return True

    def find_hash(self, digest: bytes, version: int | None = None) -> Version | None:
        """The stored version with this hash (that number if given), newest first; unreadable files skipped."""
        for v in reversed(self.versions() if version is None else [version]):
            try:
                rec = self.read(v)
            except StoreError:
                continue
            if rec.hash == digest:
                return rec
        return None
