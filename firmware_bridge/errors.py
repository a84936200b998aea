"""Errors of the serial link that a user or the control loop must see."""


class LinkError(Exception):
    """The link to the microcontroller failed (port, handshake, ack). The message says what to check."""
