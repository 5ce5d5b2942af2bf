"""Container health probe: `python deploy/probe.py grpc 50051` or `... http http://127.0.0.1:8085/`.

Docker's HEALTHCHECK runs this inside each image (compose uses it for depends_on
conditions); Kubernetes uses its native `grpc:` probes instead and never needs it.
grpc asks grpc.health.v1 Check (grpclib's health stub) and passes only on SERVING, so a
service whose dependency is down (its health says NOT_SERVING) is reported unhealthy. http
passes on a 2xx answer. Exit 0 healthy, 1 unhealthy, 2 bad usage.

Imports only the stdlib and grpclib (already in every Python image), so it adds nothing
to the image and does not import the service it checks.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import urllib.error
import urllib.request


async def grpc_serving(host: str, port: int, service: str, seconds: float) -> bool:
    from grpclib.client import Channel
    from grpclib.health.v1.health_grpc import HealthStub
    from grpclib.health.v1.health_pb2 import HealthCheckRequest, HealthCheckResponse

    channel = Channel(host, port)
    try:
        async with asyncio.timeout(seconds):
            reply = await HealthStub(channel).Check(HealthCheckRequest(service=service))
        return reply.status == HealthCheckResponse.SERVING
    except Exception:  # refused, timeout, GRPCError...: anything but SERVING is unhealthy
        return False
    finally:
        channel.close()


def http_ok(url: str, timeout: float) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as reply:
            return 200 <= reply.status < 300
    except (OSError, urllib.error.URLError):
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="kind", required=True)
    grpc = sub.add_parser("grpc", help="grpc.health.v1 Check must answer SERVING")
    grpc.add_argument("port", type=int)
    grpc.add_argument("--host", default="127.0.0.1")
    grpc.add_argument("--service", default="", help="health service name ('' = the server)")
    http = sub.add_parser("http", help="GET must answer 2xx")
    http.add_argument("url")
    for p in (grpc, http):
        p.add_argument("--timeout", type=float, default=3.0, help="seconds")
    args = parser.parse_args(argv)
    if args.kind == "grpc":
        ok = asyncio.run(grpc_serving(args.host, args.port, args.service, args.timeout))
    else:
        ok = http_ok(args.url, args.timeout)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
