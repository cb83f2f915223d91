"""The RFC 6455 pieces a topic watch needs on the server side: the upgrade handshake, server
frames, and parsing the (masked, control-only) frames clients send. Standard library only."""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
from collections.abc import Mapping

WEBSOCKET_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MAX_CLIENT_FRAME = 1 << 16  # clients only send control frames; anything larger is refused
OP_TEXT, OP_CLOSE, OP_PING, OP_PONG = 0x1, 0x8, 0x9, 0xA
CLOSE_GOING_AWAY, CLOSE_PROTOCOL_ERROR, CLOSE_TOO_BIG = 1001, 1002, 1009


class ProtocolError(Exception):
    """A client frame that breaks RFC 6455; ``code`` is the close code to answer with."""

    def __init__(self, code: int):
        super().__init__(code)
        self.code = code


def handshake_accept(headers: Mapping[str, str]) -> str | None:
    """``Sec-WebSocket-Accept`` for a valid RFC 6455 upgrade request, else None."""
    if "websocket" not in _tokens(headers.get("Upgrade", "")):
        return None
    if "upgrade" not in _tokens(headers.get("Connection", "")):
        return None
    if headers.get("Sec-WebSocket-Version", "").strip() != "13":
        return None
    key = headers.get("Sec-WebSocket-Key", "").strip()
    try:
        if len(base64.b64decode(key, validate=True)) != 16:
            return None
    except binascii.Error:
        return None
    return base64.b64encode(hashlib.sha1(key.encode("ascii") + WEBSOCKET_GUID).digest()).decode("ascii")


def _tokens(value: str) -> set[str]:
    return {token.strip().lower() for token in value.split(",")}


def frame(opcode: int, payload: bytes = b"") -> bytes:
    """One unmasked, unfragmented server frame."""
    head = bytes([0x80 | opcode])
    if len(payload) < 126:
        return head + bytes([len(payload)]) + payload
    if len(payload) < 1 << 16:
        return head + struct.pack("!BH", 126, len(payload)) + payload
    return head + struct.pack("!BQ", 127, len(payload)) + payload


def close_frame(code: int) -> bytes:
    return frame(OP_CLOSE, struct.pack("!H", code))


def parse_frame(buffer: bytearray) -> tuple[int, bytes] | None:
    """Take one complete client frame off ``buffer``: (opcode, unmasked payload), or None
    if it is not all there yet. Raises ProtocolError."""
    if len(buffer) < 2:
        return None
    first, second = buffer[0], buffer[1]
    if first & 0x70 or not second & 0x80:  # extension bits unnegotiated; clients must mask
        raise ProtocolError(CLOSE_PROTOCOL_ERROR)
    length, at = second & 0x7F, 2
    if length == 126:
        if len(buffer) < 4:
            return None
        (length,), at = struct.unpack_from("!H", buffer, 2), 4
    elif length == 127:
        if len(buffer) < 10:
            return None
        (length,), at = struct.unpack_from("!Q", buffer, 2), 10
    if length > MAX_CLIENT_FRAME:
        raise ProtocolError(CLOSE_TOO_BIG)
    if len(buffer) < at + 4 + length:
        return None
    mask = bytes(buffer[at : at + 4]) * (length // 4 + 1)
    masked = bytes(buffer[at + 4 : at + 4 + length])
    payload = (int.from_bytes(masked, "big") ^ int.from_bytes(mask[:length], "big")).to_bytes(length, "big")
    del buffer[: at + 4 + length]
    return first & 0x0F, payload
