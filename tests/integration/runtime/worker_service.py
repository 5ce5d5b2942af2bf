"""A service for the worker tests: the runtime's serve() with an in-memory ProductService (a
stub built from its descriptor, mesh/stubs.py), run as a real process
(`python -m tests.integration.runtime.worker_service`).

GetProduct answers with the serving process's pid in `name` (so a client sees which worker
served it); id "slow" takes WORKERTEST_SLOW_S seconds. Two background tasks append their
pid to files in WORKERTEST_DIR: `once` (runs once per service) and `each` (per_process). A
scrape-time gauge `workertest_processes` is 1 in every process that serves.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from mesh.stubs import Stub
from services.runtime.errors import NotFound
from services.runtime.metrics import Metrics
from services.runtime.server import ServerConfig, per_process, run, serve
from shop.product.v1 import product_pb2 as pb


async def get_product(request: pb.GetProductRequest) -> pb.GetProductResponse:
    if request.id == "slow":
        await asyncio.sleep(float(os.environ.get("WORKERTEST_SLOW_S", "1")))
    elif request.id != "p-0001":
        raise NotFound(f"product {request.id} not found")
    return pb.GetProductResponse(product=pb.Product(id=request.id, name=str(os.getpid())))


def _note(name: str) -> None:
    with (Path(os.environ["WORKERTEST_DIR"]) / name).open("a") as fh:
        fh.write(f"{os.getpid()}\n")


async def once() -> None:
    _note("once")
    await asyncio.Event().wait()


async def each() -> None:
    _note("each")
    await asyncio.Event().wait()


async def main() -> int:
    config = ServerConfig.from_env("WORKERTEST", name="workertest")
    metrics = Metrics("workertest")
    metrics.gauge_at_scrape(
        "processes", lambda: iter([("workertest_processes", "serving processes", {}, 1.0)])
    )
    return await serve(
        config,
        [Stub(pb.DESCRIPTOR.services_by_name["ProductService"], {"GetProduct": get_product})],
        [],
        [once, per_process(each)],
        metrics=metrics,
        auth=_allow,
    )


async def _allow(_call: object) -> None:
    return None


if __name__ == "__main__":
    run(main)
