#!/usr/bin/env python3
"""Turn firmware_bridge/test_vectors.json into the line format that vector_runner (C) reads on stdin.

Standard library only, and independent of the project's Python codec: the C test must check the firmware
against the vectors file, not against the Python implementation. One record per line, tab-separated:

    crc       NAME  INPUT_HEX  CHECK
    frame     NAME  DIRECTION  HEX  TYPE  SEQ  FIELDS
    invalid   NAME  DIRECTION  REASON  HEX
    stream    NAME  DIRECTION  END_MS  CHUNKS  FRAMES  COUNTERS
    scenario  NAME  END_MS  STEPS  REPLIES  FINAL

HEX is contiguous lowercase hex; DIRECTION is host_to_mcu or mcu_to_host; FIELDS is the payload fields
in wire order, comma-separated ("-" when none); CHUNKS / STEPS / REPLIES are space-separated T_MS:HEX;
FRAMES is space-separated TYPE:SEQ:FIELDS; COUNTERS is garbage,crc,oversized,truncated,unknown,bad_length;
FINAL is STATE,LEFT,RIGHT (numbers). Empty lists are "-".
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

# PROTOCOL.md §5: message types and payload field order.
TYPE_CODES = {
    "HELLO": 0x01,
    "ARM": 0x02,
    "DISARM": 0x03,
    "DRIVE": 0x04,
    "STOP": 0x05,
    "HEARTBEAT": 0x06,
    "STATUS_REQUEST": 0x07,
    "VERSION": 0x81,
    "ACK": 0x82,
    "FAULT": 0x83,
    "STATUS": 0x84,
}
FIELD_ORDER = {
    "HELLO": ["protocol_version"],
    "DRIVE": ["speed"],
    "VERSION": [
        "protocol_version",
        "firmware_major",
        "firmware_minor",
        "firmware_patch",
        "watchdog_ms",
        "speed_min",
        "speed_max",
    ],
    "ACK": [
        "acked_seq",
        "acked_type",
        "result",
        "state",
        "motor_left",
        "motor_right",
        "discarded",
        "watchdog_trips",
    ],
    "FAULT": ["code", "detail", "state", "count"],
    "STATUS": [
        "state",
        "motor_left",
        "motor_right",
        "garbage_bytes",
        "crc_errors",
        "oversized",
        "truncated",
        "unknown_type",
        "bad_length",
        "clamped",
        "watchdog_trips",
        "uptime_ms",
    ],
}
STATES = {"DISARMED": 0, "ARMED": 1, "DRIVING": 2, "WATCHDOG": 3}
COUNTER_ORDER = ["garbage_bytes", "crc_errors", "oversized", "truncated", "unknown_type", "bad_length"]


def hexstr(spaced: str) -> str:
    return spaced.replace(" ", "").lower() or "-"


def field_list(type_name: str, fields: dict[str, int]) -> str:
    order = FIELD_ORDER.get(type_name, [])
    if sorted(order) != sorted(fields):
        raise SystemExit(f"vectors: fields {sorted(fields)} of {type_name} differ from PROTOCOL.md {order}")
    return ",".join(str(int(fields[name])) for name in order) or "-"


def timed(items: list[dict[str, Any]]) -> str:
    return " ".join(f"{item['t_ms']}:{hexstr(str(item['hex']))}" for item in items) or "-"


def records(vectors: dict[str, Any]) -> list[list[str]]:
    out: list[list[str]] = []
    crc = vectors["crc"]
    out.append(["crc", str(crc["name"]), crc["check_input_ascii"].encode().hex(), str(int(crc["check"], 16))])
    for f in vectors["frames"]:
        out.append(
            [
                "frame",
                f["name"],
                f["direction"],
                hexstr(f["hex"]),
                str(TYPE_CODES[f["type"]]),
                str(f["seq"]),
                field_list(f["type"], f["fields"]),
            ]
        )
    for f in vectors["invalid"]:
        out.append(["invalid", f["name"], f["direction"], f["reason"], hexstr(f["hex"])])
    for s in vectors["streams"]:
        frames = " ".join(
            f"{TYPE_CODES[fr['type']]}:{fr['seq']}:{field_list(fr['type'], fr['fields'])}"
            for fr in s["frames"]
        )
        counters = ",".join(str(s["counters"][name]) for name in COUNTER_ORDER)
        out.append(
            [
                "stream",
                s["name"],
                s["direction"],
                str(s["end_ms"]),
                timed(s["chunks"]),
                frames or "-",
                counters,
            ]
        )
    for c in vectors["scenarios"]:
        final = c["final"]
        out.append(
            [
                "scenario",
                c["name"],
                str(c["end_ms"]),
                timed(c["steps"]),
                timed(c["replies"]),
                f"{STATES[final['state']]},{final['motor_left']},{final['motor_right']}",
            ]
        )
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: vectors_to_text.py firmware_bridge/test_vectors.json", file=sys.stderr)
        return 2
    vectors = json.loads(Path(argv[1]).read_text(encoding="utf-8"))
    for record in records(vectors):
        if any("\t" in field or "\n" in field for field in record):
            raise SystemExit(f"vectors: a tab or newline inside {record[:2]}")
        print("\t".join(record))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
