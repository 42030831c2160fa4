"""Transport packet protection and the rekey state machine (docs/protocol.md sections 4 and 5)."""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from dataclasses import dataclass

from . import wire
from .errors import BadHmacError, BadPlaintextError, DecryptError, RekeyError, ReplayError
from .primitives import (
    DirectionKeys,
    TransportKeys,
    aead_decrypt,
    aead_encrypt,
    check_mac,
    dh,
    public_key,
    rekey_keys,
    seal_packet,
)
from .wire import Flag, Header
from .x25519 import clamp

# ---- transport ----


class ReceiveSequence:
    """The receiver's sequence check: TCP keeps a genuine stream whole and in order, so only
    the sequence after the last one accepted is valid (no gap, no repeat)."""

    def __init__(self, start: int) -> None:
        self.top = start  # the last sequence accepted (the peer's seq_* before any)

    def check(self, seq: int) -> bool:
        return seq == self.top + 1

    def update(self, seq: int) -> None:
        self.top = seq


def nonce_for(mac: bytes, seq: int) -> bytes:
    return mac[:4] + struct.pack(">Q", seq)


def protect(
    keys: DirectionKeys,
    ptype: int,
    plaintext: bytes,
    *,
    seq: int,
    ack: int,
    session_id: bytes,
    timestamp: int,
    channel: int = 0,
    flags: int = 0,
) -> bytes:
    """A complete transport packet (section 4)."""
    ct = aead_encrypt(keys.key, nonce_for(keys.mac, seq), plaintext, b"")
    hdr = Header(
        type=ptype,
        flags=flags | Flag.ENCRYPTED,
        seq=seq,
        ack=ack,
        session_id=session_id,
        timestamp=timestamp,
        payload_len=len(ct),
        channel=channel,
    )
    return seal_packet(keys.mac, hdr, ct)


def unprotect(
    keys: DirectionKeys, hdr: Header, payload: bytes, window: ReceiveSequence, session_id: bytes | None = None
) -> bytes:
    """Plaintext of a transport packet: HMAC -> session id (when given) -> sequence ->
    decrypt; updates the sequence. Any TransportError ends the session (docs/protocol.md 4b)."""
    if not check_mac(keys.mac, hdr, payload):
        raise BadHmacError(f"seq {hdr.seq}: header HMAC does not verify")
    if not hdr.flags & Flag.ENCRYPTED:
        raise BadHmacError(f"seq {hdr.seq}: ENCRYPTED flag missing")
    if session_id is not None and hdr.session_id != session_id:
        raise BadPlaintextError(f"seq {hdr.seq}: session id {hdr.session_id.hex()} is not this session's")
    if not window.check(hdr.seq):
        raise ReplayError(f"seq {hdr.seq}: out of order (expected {window.top + 1})")
    pt = aead_decrypt(keys.key, nonce_for(keys.mac, hdr.seq), payload, b"")
    if pt is None:
        raise DecryptError(f"seq {hdr.seq}: AEAD tag does not verify")
    window.update(hdr.seq)
    return pt


# ---- rekey state machine (section 5) ----


class RekeyState:
    IDLE = "idle"
    INIT_SENT = "init-sent"
    REPLY_SENT = "reply-sent"


@dataclass
class RekeyAction:
    """What the session must do after a rekey event, in this order.

    send: REKEY plaintext to send under the *current* send keys (or None);
    new_send: keys to switch sending to right after that packet (or None);
    new_recv: keys to receive with from the next packet on (or None).
    """

    send: wire.Rekey | None = None
    new_send: DirectionKeys | None = None
    new_recv: DirectionKeys | None = None
    epoch_done: int | None = None


class Rekeyer:
    """Rekey bookkeeping of one session: epochs, ephemerals and the tie-break."""

    def __init__(
        self,
        rk: bytes,
        initiator: bool,
        own_id: bytes,
        rng: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.rk = rk
        self.initiator = initiator
        self.own_id = int.from_bytes(own_id, "big")
        self.peer_id: int | None = None
        self.epoch = 0
        self.state = RekeyState.IDLE
        self.rng = rng
        self._e = b""
        self._pending: TransportKeys | None = None

    def set_peer_id(self, peer_id: bytes) -> None:
        self.peer_id = int.from_bytes(peer_id, "big")

    def _wins(self) -> bool:
        assert self.peer_id is not None
        if self.own_id == self.peer_id:
            return self.initiator
        return self.own_id < self.peer_id

    def _orient(self, t: TransportKeys) -> tuple[DirectionKeys, DirectionKeys]:
        return (t.i2r, t.r2i) if self.initiator else (t.r2i, t.i2r)

    def start(self) -> wire.Rekey | None:
        """REKEY INIT to send (under current keys), or None if a rekey is already running."""
        if self.state != RekeyState.IDLE:
            return None
        self._e = clamp(self.rng(32))
        self.state = RekeyState.INIT_SENT
        return wire.Rekey(wire.RekeyKind.INIT, self.epoch + 1, public_key(self._e))

    def on_rekey(self, msg: wire.Rekey) -> RekeyAction:
        nxt = self.epoch + 1
        if msg.epoch != nxt:
            raise RekeyError(f"REKEY {wire.RekeyKind(msg.kind).name} for epoch {msg.epoch}, expected {nxt}")
        if msg.kind == wire.RekeyKind.INIT:
            if self.state == RekeyState.INIT_SENT:
                if self._wins():
                    return RekeyAction()  # the peer abandons its INIT and answers ours
                self._e = b""  # abandon ours
            elif self.state != RekeyState.IDLE:
                raise RekeyError("REKEY INIT while a reply is outstanding")
            e_b = clamp(self.rng(32))
            t = rekey_keys(self.rk, dh(e_b, msg.ephemeral))
            self._pending = t
            self.state = RekeyState.REPLY_SENT
            send, _recv = self._orient(t)
            return RekeyAction(send=wire.Rekey(wire.RekeyKind.REPLY, nxt, public_key(e_b)), new_send=send)
        if msg.kind == wire.RekeyKind.REPLY:
            if self.state != RekeyState.INIT_SENT:
                raise RekeyError("REKEY REPLY without our INIT")
            t = rekey_keys(self.rk, dh(self._e, msg.ephemeral))
            self._e = b""
            send, recv = self._orient(t)
            self._finish(t)
            return RekeyAction(
                send=wire.Rekey(wire.RekeyKind.SWITCH, nxt), new_send=send, new_recv=recv, epoch_done=nxt
            )
        # SWITCH
        if self.state != RekeyState.REPLY_SENT or self._pending is None:
            raise RekeyError("REKEY SWITCH without our REPLY")
        t = self._pending
        _send, recv = self._orient(t)
        self._finish(t)
        return RekeyAction(new_recv=recv, epoch_done=nxt)

    def _finish(self, t: TransportKeys) -> None:
        self.rk = t.rk
        self.epoch += 1
        self.state = RekeyState.IDLE
        self._pending = None
