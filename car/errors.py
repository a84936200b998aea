class CarError(Exception):
    """Bad input to a car command (config, log, flag). The message names the input and the fix."""
