"""One established POOL/1 session's packet state (docs/protocol.md sections 4 and 5).

Pure bookkeeping over byte strings: the oriented keys of the current epoch,
the send sequence, the receive sequence check, the acknowledgment value and
the rekey state machine. Callers must write packets in the order seal()
returns them (a rekey switches keys between two packets).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass

from . import noise, wire
from .flow import FlowControl
from .wire import Flag, Header, PacketType

# docs/protocol.md section 5: a rekey completes within 15 s; send keys are never used past
# rekey_seconds + 60 s or rekey_packets + 2^20 packets.
REKEY_TIMEOUT_S = 15
REJECT_AFTER_EXTRA_S = 60
REJECT_AFTER_EXTRA_PACKETS = 1 << 20


@dataclass(frozen=True)
class Received:
    """A transport packet that passed HMAC, sequence check and decryption."""

    type: PacketType
    plaintext: bytes
    header: Header


class Session:
    def __init__(
        self,
        result: noise.HandshakeResult,
        *,
        clock: Callable[[], int] = time.time_ns,
        rng: Callable[[int], bytes] = os.urandom,
    ) -> None:
        k = result.keys
        self.initiator = result.initiator
        self.session_id = result.session_id
        self.peer_static = result.peer_static
        if self.initiator:
            self.send_keys, self.recv_keys = k.i2r, k.r2i
            self.send_seq, recv_start = k.seq_i2r, k.seq_r2i
        else:
            self.send_keys, self.recv_keys = k.r2i, k.i2r
            self.send_seq, recv_start = k.seq_r2i, k.seq_i2r
        self.window = noise.ReceiveSequence(recv_start)
        own, peer = (result.iid, result.rid) if self.initiator else (result.rid, result.iid)
        self.rekeyer = noise.Rekeyer(k.rk, self.initiator, own, rng)
        self.rekeyer.set_peer_id(peer)
        self.clock = clock
        self.packets_on_keys = 0
        self.keys_since = clock()
        self.flow = FlowControl()
        self.rekey_since: int | None = None  # clock() when the rekey in flight began
        self.rekey_sent_seq = 0  # sequence of our REKEY in flight
        self.peer_acked = 0  # highest acknowledgment the peer sent

    @property
    def highest_recv(self) -> int:
        """The acknowledgment value: the last sequence accepted, the peer's seq_* before any."""
        return self.window.top

    @property
    def epoch(self) -> int:
        return self.rekeyer.epoch

    def seal(self, ptype: int, plaintext: bytes, *, channel: int = 0, flags: int = 0) -> bytes:
        if len(plaintext) > wire.MAX_MESSAGE:
            raise ValueError(f"message of {len(plaintext)} bytes above {wire.MAX_MESSAGE}")
        self.send_seq += 1
        self.packets_on_keys += 1
        return noise.protect(
            self.send_keys,
            ptype,
            plaintext,
            seq=self.send_seq,
            ack=self.highest_recv,
            session_id=self.session_id,
            timestamp=self.clock(),
            channel=channel,
            flags=flags,
        )

    def open(self, hdr: Header, payload: bytes) -> Received:
        """Check and decrypt; TransportError (drop it) or MalformedError (close) otherwise."""
        if not hdr.flags & Flag.ENCRYPTED:
            raise wire.MalformedError("flags", f"unencrypted {PacketType(hdr.type).name} after the handshake")
        pt = noise.unprotect(self.recv_keys, hdr, payload, self.window, self.session_id)
        self.peer_acked = max(self.peer_acked, hdr.ack)
        ptype = PacketType(hdr.type)
        want = wire.PLAINTEXT_LEN.get(ptype)
        if want is not None and len(pt) != want:
            raise noise.BadPlaintextError(f"{ptype.name} plaintext of {len(pt)} bytes, expected {want}")
        return Received(ptype, pt, hdr)

    def _apply(self, action: noise.RekeyAction) -> list[bytes]:
        out = []
        if action.new_recv is not None and action.send is not None:
            # REPLY received: receive with n+1 from now, SWITCH goes out under epoch n.
            self.recv_keys = action.new_recv
        if action.send is not None:
            out.append(self.seal(PacketType.REKEY, action.send.encode()))
        if action.new_send is not None:
            self.send_keys = action.new_send
            self.packets_on_keys = 0
            self.keys_since = self.clock()
        if action.new_recv is not None:
            self.recv_keys = action.new_recv
        return out

    def _track_rekey(self, sent: bool) -> None:
        if self.rekeyer.state == noise.RekeyState.IDLE:
            self.rekey_since = None
        elif sent:  # our INIT, or the REPLY that awaits a SWITCH: its clock starts
            self.rekey_since = self.clock()
            self.rekey_sent_seq = self.send_seq

    def start_rekey(self) -> list[bytes]:
        """Packets to send to start a rekey (none if one is in flight)."""
        msg = self.rekeyer.start()
        out = [self.seal(PacketType.REKEY, msg.encode())] if msg else []
        self._track_rekey(bool(out))
        return out

    def on_rekey(self, plaintext: bytes) -> list[bytes]:
        """Packets to send in answer to a REKEY plaintext; RekeyError closes the session."""
        try:
            msg = wire.Rekey.decode(plaintext)
        except wire.WireError as exc:
            raise noise.RekeyError(str(exc)) from None
        out = self._apply(self.rekeyer.on_rekey(msg))
        self._track_rekey(bool(out))
        return out

    def rekey_overdue(self) -> bool:
        """Our REKEY unanswered REKEY_TIMEOUT_S after the peer acknowledged it: the session
        closes (REKEY_FAIL). Before the peer acknowledged it, the clock restarts (our REKEY may
        still be in a congested path's buffers)."""
        if self.rekey_since is None or self.clock() - self.rekey_since <= REKEY_TIMEOUT_S * 1e9:
            return False
        if self.peer_acked >= self.rekey_sent_seq:
            return True
        self.rekey_since = self.clock()
        return False

    def keys_expired(self, rekey_seconds: float, rekey_packets: int) -> bool:
        """The send keys are past their hard limit (section 5): send nothing but CLOSE KEY_EXPIRED."""
        age = (self.clock() - self.keys_since) / 1e9
        return (
            age >= rekey_seconds + REJECT_AFTER_EXTRA_S
            or self.packets_on_keys >= rekey_packets + REJECT_AFTER_EXTRA_PACKETS
        )

    def rekey_due(self, rekey_seconds: float, rekey_packets: int) -> bool:
        if self.rekeyer.state != noise.RekeyState.IDLE:
            return False
        age = (self.clock() - self.keys_since) / 1e9
        return age >= rekey_seconds or self.packets_on_keys >= rekey_packets
