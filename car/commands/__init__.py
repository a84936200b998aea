"""One module per `car` sub-command: `add_arguments(parser)` and `run(args) -> int`."""
