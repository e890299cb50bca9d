"""The floor: the same Cloud Run calls `tfms apply` makes, from a bare script.

Per service: GetService (not found), CreateService with the body tfms renders (rendered
beforehand by the driver, so this script pays nothing for validation or rendering), then
GetService until Cloud Run says the revision is ready, sleeping `--interval` between
polls as `tfms apply` does. All services are in flight at once (asyncio.gather), over
one grpc.aio channel and the unmodified async google-cloud-run client.

    python -m bench.floor BODIES.json HOST:PORT [--interval 1.0] [--concurrency 0] --out TIMING.json

BODIES.json: a list of {"parent", "service_id", "name", "revision", "body"}. With
`--mode resync` it only reads (one GetService per service) - a bare resync.
"""

from __future__ import annotations

import time

STARTED = time.perf_counter()

import argparse  # noqa: E402 - the clock starts before any import
import asyncio  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from typing import Any  # noqa: E402

import grpc  # noqa: E402
from google.api_core import exceptions as gexc  # noqa: E402
from google.cloud import run_v2  # noqa: E402
from google.cloud.run_v2.services.services.transports import ServicesGrpcAsyncIOTransport  # noqa: E402

IMPORTED = time.perf_counter()
SUCCEEDED = run_v2.Condition.State.CONDITION_SUCCEEDED


def converged(svc: run_v2.Service, revision: str) -> bool:
    """Cloud Run's definition of done, the short way."""
    created = svc.latest_created_revision.rsplit("/", 1)[-1]
    return (not svc.reconciling and svc.observed_generation == svc.generation
            and svc.terminal_condition.state == SUCCEEDED
            and created == revision and svc.latest_ready_revision == svc.latest_created_revision)


async def main(args: argparse.Namespace) -> dict[str, Any]:
    with open(args.bodies, encoding="utf-8") as f:
        items = json.load(f)
    channel = grpc.aio.insecure_channel(args.endpoint)
    client = run_v2.ServicesAsyncClient(transport=ServicesGrpcAsyncIOTransport(channel=channel))
    gate = asyncio.Semaphore(args.concurrency) if args.concurrency > 0 else None
    polls = 0

    async def converge(item: dict[str, Any]) -> None:
        nonlocal polls
        try:
            await client.get_service(name=item["name"])
            raise SystemExit(f"{item['name']} already exists: the floor starts from nothing")
        except gexc.NotFound:
            pass
        service = run_v2.Service.from_json(json.dumps(item["body"]))
        await client.create_service(request=run_v2.CreateServiceRequest(
            parent=item["parent"], service_id=item["service_id"], service=service))
        deadline = time.monotonic() + args.timeout
        while True:
            polls += 1
            if converged(await client.get_service(name=item["name"]), item["revision"]):
                return
            if time.monotonic() > deadline:
                raise SystemExit(f"{item['name']} not ready after {args.timeout}s")
            await asyncio.sleep(args.interval)

    async def resync(item: dict[str, Any]) -> None:
        if not converged(await client.get_service(name=item["name"]), item["revision"]):
            raise SystemExit(f"{item['name']} is not converged")

    async def one(item: dict[str, Any]) -> None:
        work = converge if args.mode == "converge" else resync
        if gate is None:
            await work(item)
        else:
            async with gate:
                await work(item)

    began = time.perf_counter()
    await asyncio.gather(*(one(item) for item in items))
    done = time.perf_counter()
    await channel.close()
    return {"import_s": IMPORTED - STARTED, "work_s": done - began, "total_s": done - STARTED,
            "services": len(items), "polls": polls}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bodies")
    parser.add_argument("endpoint")
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--concurrency", type=int, default=0, help="0: every service at once")
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--mode", choices=["converge", "resync"], default="converge")
    parser.add_argument("--out", required=True)
    result = asyncio.run(main(parser.parse_args()))
    with open(parser.parse_args().out, "w", encoding="utf-8") as f:
        json.dump(result, f)
    sys.exit(0)
