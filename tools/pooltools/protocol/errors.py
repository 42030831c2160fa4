"""Every refusal of the POOL/1 codec as an exception carrying its POOL error code."""

from __future__ import annotations

from . import wire
from .wire import ErrorCode


class PoolError(Exception):
    """Base of every refusal; `code` is the POOL error code it maps to."""

    code: ErrorCode = ErrorCode.NONE


class HandshakeError(PoolError):
    code = ErrorCode.AUTH_FAIL

    @property
    def wire_code(self) -> int:
        """Code a responder sends in a handshake CLOSE for this refusal, 0 for none.

        Only AUTH_FAIL (also for an unknown peer) and OVERLOAD are told; stale
        timestamps, bad puzzles, replays, bad framing and bad header HMACs are
        answered by closing the connection only.
        """
        if self.code in (ErrorCode.AUTH_FAIL, ErrorCode.UNKNOWN_PEER) and not isinstance(self, BadMacError):
            return ErrorCode.AUTH_FAIL
        if self.code == ErrorCode.OVERLOAD:
            return ErrorCode.OVERLOAD
        return 0


class BadMacError(HandshakeError):
    """Handshake header HMAC does not verify (sender does not know our static key)."""

    code = ErrorCode.AUTH_FAIL


class StaleTimestampError(HandshakeError):
    code = ErrorCode.STALE_TIMESTAMP


class BadPuzzleError(HandshakeError):
    code = ErrorCode.BAD_PUZZLE


class AuthFailError(HandshakeError):
    code = ErrorCode.AUTH_FAIL


class LowOrderPointError(AuthFailError):
    """An X25519 result was all zero."""


class UnknownPeerError(HandshakeError):
    code = ErrorCode.UNKNOWN_PEER


class ReplayedInitError(HandshakeError):
    code = ErrorCode.REPLAY


class OverloadError(HandshakeError):
    code = ErrorCode.OVERLOAD


class ChallengeTooHardError(HandshakeError):
    code = ErrorCode.TIMEOUT


class ProtocolError(HandshakeError):
    """A packet of the wrong type or with wrong fields for the current step."""

    code = ErrorCode.MALFORMED


class HandshakeClosedError(HandshakeError):
    """The responder answered with a handshake CLOSE carrying `code`."""

    def __init__(self, code: int) -> None:
        super().__init__(f"responder closed the handshake: {wire.code_name(code)}")
        self.code = code  # type: ignore[assignment]


class TransportError(PoolError):
    """A transport packet that fails a check: the stream was altered and the session ends."""


class BadHmacError(TransportError):
    code = ErrorCode.AUTH_FAIL


class ReplayError(TransportError):
    code = ErrorCode.SEQ_INVALID


class DecryptError(TransportError):
    code = ErrorCode.DECRYPT_FAIL


class BadPlaintextError(TransportError):
    """An authenticated packet that cannot be used (MALFORMED): another session's
    id, or a plaintext of the wrong size for its type (framing makes the latter impossible)."""

    code = ErrorCode.MALFORMED


class RekeyError(PoolError):
    code = ErrorCode.REKEY_FAIL
