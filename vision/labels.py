"""The two classes, as the published experiment numbered them (file names `{label}_{uuid}.jpg`)."""

from typing import Final

GO: Final = 0
STOP: Final = 1
LABEL_NAMES: Final = ("GO", "STOP")


def label_name(label: int) -> str:
    """`0 -> "GO"`, `1 -> "STOP"`; anything else is a programming error."""
    if label not in (GO, STOP):
        raise ValueError(f"label must be 0 (GO) or 1 (STOP), got {label!r}")
    return LABEL_NAMES[label]
