"""`car label`: label logged frames GO/STOP in a browser into a dataset folder `car train` reads."""

from __future__ import annotations

import argparse
import threading
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("logs", nargs="+", type=Path, metavar="LOG", help="drive logs (.sqlite) to label")
    parser.add_argument(
        "--out", type=Path, required=True, help="dataset folder to write (run again to resume)"
    )
    parser.add_argument(
        "--model", type=Path, default=None, help="bundle whose P(STOP) is shown; its disagreements come first"
    )
    parser.add_argument(
        "--web",
        default="8090",
        metavar="[HOST:]PORT",
        help="where the labeller listens (default 8090 on 127.0.0.1; other hosts need CAR_WEB_TOKEN)",
    )
    parser.add_argument("--every", type=int, default=1, help="offer every N-th frame only (default: all)")
    parser.add_argument("--token", default="", help="access token ('auto': a random one); env CAR_WEB_TOKEN")


def run(args: argparse.Namespace) -> int:
    from car.errors import CarError
    from car.label_session import LabelSession, read_items, suggest

    if args.every < 1:
        raise CarError(f"--every {args.every}: must be at least 1")
    items = read_items(args.logs, args.every)
    threshold = None
    if args.model is not None:
        items, threshold = suggest(items, args.model)
    session = LabelSession(items, args.out, threshold)
    from car.web.labeller import labeller_app
    from car.web.security import AccessPolicy, parse_listen
    from car.web.server import WebServer

    host, port = parse_listen(args.web)
    policy = AccessPolicy.resolve(host, args.token)
    server = WebServer(labeller_app(session, policy), host, port).start()
    url = server.url + (f"?token={policy.token}" if policy.required and policy.generated else "")
    counts = session.counts()
    print(
        f"car label: {counts['total']} frames from {len(args.logs)} log(s), {counts['left']} left to label; "
        f"open {url}  (Ctrl-C when done; labels are saved as you go in {args.out})"
    )
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        counts = session.counts()
        session.close()
        print(f"car label: {counts['go']} GO, {counts['stop']} STOP, {counts['skip']} skipped in {args.out}")
    return 0
