"""User errors: exceptions that mean "your input is wrong", which `car` prints as one line (exit 2).

`CarError` is this package's. Packages below `car` (vision, firmware_bridge) have their own, which the CLI
knows; a package above it (explain) registers its error class with `register_user_error` when it is
imported, so `car` never imports it (no upward import).
"""

from __future__ import annotations

from typing import TypeVar

E = TypeVar("E", bound=BaseException)


class CarError(Exception):
    """Bad input to a car command (config, log, flag). The message names the input and the fix."""


_REGISTERED: list[type[BaseException]] = [CarError, FileNotFoundError, PermissionError]


def register_user_error(cls: type[E]) -> type[E]:
    """Class decorator: `car` prints `cls` as a one-line error with exit 2 instead of a traceback."""
    if cls not in _REGISTERED:
        _REGISTERED.append(cls)
    return cls


def user_error_types() -> tuple[type[BaseException], ...]:
    """Every user error class: this package's, the lower packages', and those registered so far."""
    from firmware_bridge.errors import LinkError
    from vision.errors import VisionError

    return (*_REGISTERED, LinkError, VisionError)
