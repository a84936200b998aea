"""`car collect`: drive by hand from the web console to collect frames for labelling.

The same as `car drive --mode manual --web 8080` (every `car drive` option works): teleop from the page,
dead-man rule, speed limit and firmware watchdog in force, the network in shadow, an ordinary drive log.
"""

from __future__ import annotations

import argparse

from car.commands import drive


def add_arguments(parser: argparse.ArgumentParser) -> None:
    drive.add_arguments(parser)
    parser.set_defaults(mode="manual", web="8080")


def run(args: argparse.Namespace) -> int:
    return drive.run(args)
