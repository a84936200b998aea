"""Errors caused by the user's input (a file, a folder, a value): the CLI prints them as one line."""


class VisionError(Exception):
    """Bad input to the vision package. The message names the input and how to fix it."""
