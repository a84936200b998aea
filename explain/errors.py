class ExplainError(Exception):
    """Bad input to an audit (log, bundle, selection, background). The message says what to do."""
