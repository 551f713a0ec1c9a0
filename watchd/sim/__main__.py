"""`python -m watchd.sim`: run the API simulator in the foreground until SIGINT or SIGTERM.

Owns: turning command-line flags into a SimConfig and the foreground lifetime. Must never:
hold simulator logic (it lives in watchd.sim.server) or bind beyond loopback unless asked.

Example:
    python -m watchd.sim --port 8765 --qps 2 --processing-time 1,2 --fail-500 0.1 \\
        --task-fail=-15:0.15 --fail-prompt FAILME:-10
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from watchd.sim.config import SimConfig
from watchd.sim.server import Simulator


def _pair(text: str) -> tuple[float, float]:
    parts = [float(p) for p in text.split(",")]
    if len(parts) == 1:
        return parts[0], parts[0]
    if len(parts) == 2:
        return parts[0], parts[1]
    raise argparse.ArgumentTypeError("expected SECONDS or LOW,HIGH")


def _state_probability(text: str) -> tuple[int, float]:
    state, _, probability = text.partition(":")
    try:
        return int(state), float(probability)
    except ValueError:
        raise argparse.ArgumentTypeError("expected STATE:PROBABILITY, e.g. -15:0.15") from None


def _prompt_state(text: str) -> tuple[str, int]:
    needle, _, state = text.rpartition(":")
    try:
        return needle, int(state)
    except ValueError:
        raise argparse.ArgumentTypeError("expected TEXT:STATE, e.g. FAILME:-10") from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m watchd.sim",
        description="Serve a simulated PicWish advanced-image-expand API on loopback.",
        epilog="Example: python -m watchd.sim --port 8765 --fail-500 0.1 --task-fail=-15:0.15",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback)")
    p.add_argument("--port", type=int, default=0, help="port (default 0: any free port)")
    p.add_argument("--qps", type=float, default=2.0, help="requests per second; 0 = unlimited")
    p.add_argument("--processing-time", type=_pair, default=(1.0, 2.0), metavar="LOW,HIGH")
    p.add_argument("--url-ttl", type=float, default=3600, help="result URL lifetime, seconds")
    p.add_argument("--task-ttl", type=float, default=86400, help="task lifetime, seconds")
    p.add_argument(
        "--valid-key",
        action="append",
        dest="valid_keys",
        metavar="KEY",
        help="accept only this X-API-KEY (repeatable; default: any non-empty key)",
    )
    p.add_argument("--fail-500", type=float, default=0.0, help="fraction answered 500")
    p.add_argument("--drop", type=float, default=0.0, help="fraction closed unanswered")
    p.add_argument(
        "--lose-create",
        type=float,
        default=0.0,
        help="fraction of creates that make a task, then close unanswered",
    )
    p.add_argument("--slow", type=float, default=0.0, help="fraction of requests delayed")
    p.add_argument("--slow-delay", type=float, default=2.0, help="delay of a slow request")
    p.add_argument(
        "--task-fail",
        type=_state_probability,
        action="append",
        default=[],
        metavar="STATE:P",
        help="tasks ending in STATE with probability P (repeatable)",
    )
    p.add_argument(
        "--fail-prompt",
        type=_prompt_state,
        action="append",
        default=[],
        metavar="TEXT:STATE",
        help="a prompt containing TEXT ends in STATE",
    )
    p.add_argument("--offset-px", type=int, default=0, help="result size jitter, pixels")
    p.add_argument("--seed", type=int, default=None, help="random seed for reproducible runs")
    p.add_argument("--verbose", action="store_true", help="log each request to stderr")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = SimConfig(
            qps=args.qps,
            processing_time=args.processing_time,
            url_ttl=args.url_ttl,
            task_ttl=args.task_ttl,
            valid_keys=frozenset(args.valid_keys) if args.valid_keys else None,
            fail_500=args.fail_500,
            drop=args.drop,
            lose_create=args.lose_create,
            slow=args.slow,
            slow_delay=args.slow_delay,
            task_fail=dict(args.task_fail),
            fail_prompt=dict(args.fail_prompt),
            offset_px=args.offset_px,
            seed=args.seed,
        )
    except ValueError as exc:
        print(f"watchd simulator: {exc}", file=sys.stderr)
        return 2

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()  # only a flag: the main loop below does the stopping

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    log = (lambda line: print(line, file=sys.stderr, flush=True)) if args.verbose else None
    try:
        sim = Simulator(config, host=args.host, port=args.port, log=log).start()
    except OSError as exc:
        print(f"watchd simulator: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    print(f"watchd simulator listening on {sim.base_url}", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        sim.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
