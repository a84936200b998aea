"""The audit's user error; registered with `car.errors` so the `car` CLI prints it as one line."""

from car.errors import register_user_error


@register_user_error
class ExplainError(Exception):
    """Bad input to an audit (log, bundle, selection, background). The message says what to do."""
