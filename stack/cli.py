"""`python -m stack up|down|status|logs NAME [--only a,b]` (also `shopmesh-stack`)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

from stack.runner import Stack, StackError


def _only(value: str | None) -> list[str] | None:
    value = value or os.environ.get("SHOPMESH_STACK_ONLY")
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stack", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    for name, text in (("up", "install (first run) and start"), ("down", "stop what we started")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--only", help="comma-separated components (plus their dependencies)")
    sub.add_parser("status", help="health of each component")
    logs = sub.add_parser("logs", help="tail one component's log")
    logs.add_argument("name")
    logs.add_argument("-f", "--follow", action="store_true")
    logs.add_argument("-n", "--lines", type=int, default=50)
    args = parser.parse_args(argv)

    stack = Stack.default()
    try:
        if args.cmd == "up":
            print(f"stack up (state {stack.state})", flush=True)
            stack.up(_only(args.only))
            return 0
        if args.cmd == "down":
            stack.down(_only(args.only))
            return 0
        if args.cmd == "status":
            return 0 if stack.status() else 1
        if args.cmd == "logs":
            stack.by_name(args.name)
            path = stack.procs.log_path(args.name)
            if not path.exists():
                print(f"no log yet: {path}")
                return 1
            cmd = ["tail", "-n", str(args.lines), *(["-F"] if args.follow else []), str(path)]
            return subprocess.call(cmd)
    except StackError as exc:
        print(exc.render(), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `python -m stack status | head`
        sys.stderr.close()
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
