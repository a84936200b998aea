"""The codec against PROTOCOL.md and test_vectors.json, and a hypothesis fuzz of the decoder."""

from __future__ import annotations

import binascii
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firmware_bridge import make_vectors
from firmware_bridge.protocol import (
    HOST_TO_MCU,
    MAX_FRAME_SIZE,
    MCU_TO_HOST,
    MESSAGE_TYPES,
    SOF,
    Ack,
    AckResult,
    DecodeError,
    Drive,
    FirmwareState,
    FrameParser,
    Heartbeat,
    Hello,
    Message,
    MsgType,
    Rejected,
    RejectReason,
    Stop,
    WireFrame,
    crc16_ccitt_false,
    decode,
    encode,
    frame_size,
)
from tests.firmware_helpers import load_vectors, unhex

VECTORS = load_vectors()
FUZZ = settings(
    max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)


def receiver_types(direction: str) -> Any:
    return HOST_TO_MCU if direction == "host_to_mcu" else MCU_TO_HOST


def fields_of(message: Message) -> dict[str, int]:
    return make_vectors.message_fields(message)


# ------------------------------------------------------------------------------------------------ CRC


def test_crc_is_ccitt_false_check_value_and_matches_an_independent_implementation() -> None:
    crc = VECTORS["crc"]
    assert isinstance(crc, dict)
    assert crc16_ccitt_false(crc["check_input_ascii"].encode()) == int(crc["check"], 16) == 0x29B1
    for data in (b"", b"\x00", b"\xa5\x02\x04\x02\x58\x02", bytes(range(256))):
        assert crc16_ccitt_false(data) == binascii.crc_hqx(data, 0xFFFF)  # CCITT, init 0xFFFF


# ----------------------------------------------------------------------------------------- vectors


@pytest.mark.parametrize("vector", VECTORS["frames"], ids=lambda v: v["name"])
def test_valid_vector_decodes_and_encodes_exactly(vector: dict[str, Any]) -> None:
    raw = unhex(vector["hex"])
    frame = decode(raw, receiver_types(vector["direction"]))
    assert frame.message.TYPE.name == vector["type"]
    assert frame.seq == vector["seq"]
    assert fields_of(frame.message) == vector["fields"]
    rebuilt = MESSAGE_TYPES[int(MsgType[vector["type"]])](**vector["fields"])
    assert encode(rebuilt, vector["seq"]) == raw
    assert len(raw) <= MAX_FRAME_SIZE


@pytest.mark.parametrize("vector", VECTORS["invalid"], ids=lambda v: v["name"])
def test_invalid_vector_is_discarded_for_its_reason(vector: dict[str, Any]) -> None:
    raw = unhex(vector["hex"])
    reason = RejectReason[vector["reason"].upper()]
    parser = FrameParser(receiver_types(vector["direction"]))
    events = parser.feed(raw, now=0.0) + parser.expire(1.0)
    assert not [e for e in events if isinstance(e, WireFrame)], "an invalid vector was accepted"
    rejected = [e for e in events if isinstance(e, Rejected)]
    assert rejected and rejected[0].reason is reason
    if reason not in (RejectReason.TRUNCATED, RejectReason.OVERSIZED):
        with pytest.raises(DecodeError) as info:
            decode(raw, receiver_types(vector["direction"]))
        assert info.value.reason is reason


@pytest.mark.parametrize("vector", VECTORS["streams"], ids=lambda v: v["name"])
def test_stream_vector(vector: dict[str, Any]) -> None:
    parser = FrameParser(receiver_types(vector["direction"]))
    events: list[WireFrame | Rejected] = []
    for chunk in vector["chunks"]:
        events += parser.feed(unhex(chunk["hex"]), chunk["t_ms"] / 1000.0)
    events += parser.expire(vector["end_ms"] / 1000.0)
    frames = [e for e in events if isinstance(e, WireFrame)]
    got = [{"type": f.message.TYPE.name, "seq": f.seq, "fields": fields_of(f.message)} for f in frames]
    assert got == vector["frames"]
    counters = parser.counters
    assert {k: getattr(counters, k) for k in vector["counters"]} == vector["counters"]


def test_committed_vectors_match_the_codec() -> None:
    assert make_vectors.render() == make_vectors.VECTORS_PATH.read_text(), (
        "test_vectors.json is stale: run python -m firmware_bridge.make_vectors and review the diff"
    )


def test_vectors_cover_every_message_type_and_reason() -> None:
    assert {v["type"] for v in VECTORS["frames"]} == {t.name for t in MsgType}
    reasons = {v["reason"] for v in VECTORS["invalid"]}
    assert reasons == {r.name.lower() for r in RejectReason}


# ------------------------------------------------------------------------------------- codec basics


def test_frame_sizes_match_protocol_md() -> None:
    sizes = {t.TYPE.name: frame_size(t) for t in MESSAGE_TYPES.values()}
    assert sizes == {
        "HELLO": 7,
        "ARM": 6,
        "DISARM": 6,
        "DRIVE": 8,
        "STOP": 6,
        "HEARTBEAT": 6,
        "STATUS_REQUEST": 6,
        "VERSION": 16,
        "ACK": 18,
        "FAULT": 11,
        "STATUS": 31,
    }
    assert max(sizes.values()) <= MAX_FRAME_SIZE


def test_encode_rejects_values_that_do_not_fit() -> None:
    with pytest.raises(ValueError, match="does not fit"):
        encode(Drive(40000), 0)
    with pytest.raises(ValueError, match="sequence number"):
        encode(Stop(), 256)


def test_parser_holds_at_most_one_frame_of_bytes() -> None:
    parser = FrameParser(HOST_TO_MCU)
    parser.feed(bytes((SOF, 26)) + bytes(20))
    assert 0 < parser.pending <= MAX_FRAME_SIZE


def test_frame_split_byte_by_byte_is_still_decoded() -> None:
    stream = encode(Drive(600), 1) + encode(Stop(), 2)
    parser = FrameParser(HOST_TO_MCU)
    frames = [e for b in stream for e in parser.feed(bytes((b,))) if isinstance(e, WireFrame)]
    assert [f.message for f in frames] == [Drive(600), Stop()]


# -------------------------------------------------------------------------------------------- fuzz

host_messages = st.one_of(
    st.builds(Drive, st.integers(-32768, 32767)),
    st.builds(Hello, st.integers(0, 255)),
    st.just(Stop()),
    st.just(Heartbeat()),
)


@FUZZ
@given(st.binary(max_size=200), st.sampled_from(["host_to_mcu", "mcu_to_host"]))
def test_fuzz_random_bytes_never_crash_and_accepted_frames_are_exact(data: bytes, direction: str) -> None:
    parser = FrameParser(receiver_types(direction))
    events = parser.feed(data, now=0.0) + parser.expire(1.0)
    assert parser.pending == 0
    for event in events:
        if isinstance(event, WireFrame):
            # whatever was accepted is a well-formed frame: it re-encodes to exactly its bytes
            assert encode(event.message, event.seq) == event.raw
            assert event.raw in data


@FUZZ
@given(
    host_messages,
    st.integers(0, 255),
    st.lists(st.integers(0, 8 * MAX_FRAME_SIZE - 1), min_size=1, max_size=3, unique=True),
)
def test_fuzz_bit_errors_are_never_accepted(message: Any, seq: int, bits: list[int]) -> None:
    """1-3 flipped bits anywhere in a frame: CRC-16/CCITT has Hamming distance 4 at these lengths."""
    frame = bytearray(encode(message, seq))
    bits = [b % (8 * len(frame)) for b in bits]
    if len(set(bits)) != len(bits):
        return
    for bit in bits:
        frame[bit // 8] ^= 1 << (bit % 8)
    parser = FrameParser(HOST_TO_MCU)
    events = parser.feed(bytes(frame), now=0.0) + parser.expire(1.0)
    accepted = [e for e in events if isinstance(e, WireFrame)]
    assert accepted == [], f"corrupt frame accepted: {accepted}"


@FUZZ
@given(host_messages, st.integers(0, 255), st.integers(0, 7 * 8), st.integers(1, 0xFFFF))
def test_fuzz_burst_errors_up_to_16_bits_are_never_accepted(
    message: Any, seq: int, start_bit: int, pattern: int
) -> None:
    frame = bytearray(encode(message, seq))
    start_bit %= 8 * len(frame)
    value = int.from_bytes(frame, "big") ^ ((pattern | 1) << start_bit) % (1 << (8 * len(frame)))
    corrupted = value.to_bytes(len(frame), "big")
    if corrupted == bytes(frame):
        return
    parser = FrameParser(HOST_TO_MCU)
    events = parser.feed(corrupted, now=0.0) + parser.expire(1.0)
    assert [e for e in events if isinstance(e, WireFrame)] == []


@FUZZ
@given(
    st.lists(host_messages, min_size=1, max_size=5),
    st.binary(max_size=40),
    st.lists(st.integers(1, 40), max_size=8),
)
def test_fuzz_valid_frames_survive_garbage_before_them_and_any_chunking(
    messages: list[Any], garbage: bytes, cuts: list[int]
) -> None:
    """Garbage then a gap (the line idles) then valid frames: every frame is recovered, in order."""
    frames = b"".join(encode(m, i) for i, m in enumerate(messages))
    parser = FrameParser(HOST_TO_MCU)
    events = parser.feed(garbage, now=0.0)
    pos, t = 0, 1.0
    got: list[WireFrame] = []
    for cut in [*cuts, len(frames)]:
        got += [e for e in parser.feed(frames[pos : pos + cut], now=t) if isinstance(e, WireFrame)]
        pos += cut
        t += 0.001
    got = [e for e in events if isinstance(e, WireFrame)] + got
    assert [f.message for f in got][-len(messages) :] == messages


def test_host_rejects_undefined_enum_values_instead_of_crashing() -> None:
    good = encode(Ack(1, MsgType.DRIVE, AckResult.OK, FirmwareState.ARMED, 0, 0, 0, 0), 0)
    body = bytearray(good[1:-2])
    body[6] = 9  # state byte: 9 is no FirmwareState
    raw = bytes((SOF,)) + bytes(body) + crc16_ccitt_false(body).to_bytes(2, "little")
    with pytest.raises(DecodeError) as info:
        decode(raw, MCU_TO_HOST)
    assert info.value.reason is RejectReason.BAD_VALUE
