"""What one call between Serve deployments costs here, hot and after the caller was busy elsewhere.

    python benchmarks/serve_hops.py [--calls 300] [--json]

A `Caller` deployment awaits a no-op method of an `Echo` deployment, one call at a time, with a
busy gap before each call (a client thinking, or the in-process half of serve_latency.py's turns).
Beside it, the same loop over a bare gRPC channel (grpc.aio, what Serve's throughput mode uses
between replicas) to a server in another process: the baseline. A `/v1/search` through Serve pays
one HTTP hop and two such calls (ingress → retriever → embedder), so this is the floor under
serve_latency.py's "Serve adds" figure. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.report import add_json_flag, emit

GAPS_MS = (0.0, 2.0, 20.0)


def spin(ms: float) -> None:
    end = time.perf_counter() + ms / 1000
    while time.perf_counter() < end:
        pass


async def timed_calls(call, calls: int, gap_ms: float) -> float:  # type: ignore[no-untyped-def]
    for _ in range(20):
        await call()
    took = []
    for _ in range(calls):
        spin(gap_ms)
        t = time.perf_counter()
        await call()
        took.append((time.perf_counter() - t) * 1000)
    return statistics.median(took)


def grpc_server(port: int) -> None:
    import grpc

    async def serve() -> None:
        async def echo(request: bytes, _: object) -> bytes:
            return request

        handler = grpc.method_handlers_generic_handler(
            "bench.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(echo)}
        )
        server = grpc.aio.server()
        server.add_generic_rpc_handlers((handler,))
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        await server.wait_for_termination()

    asyncio.run(serve())


async def grpc_medians(calls: int) -> dict[float, float]:
    import grpc

    from pipelines.runtime import free_port

    port = free_port()
    server = multiprocessing.get_context("spawn").Process(target=grpc_server, args=(port,), daemon=True)
    server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            await channel.channel_ready()
            echo = channel.unary_unary("/bench.Echo/Echo")
            return {gap: await timed_calls(lambda: echo(b"x"), calls, gap) for gap in GAPS_MS}
    finally:
        server.terminate()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--calls", type=int, default=300)
    add_json_flag(p)
    args = p.parse_args()
    os.environ["RAGLINE_DATA_DIR"] = tempfile.mkdtemp(prefix="rl-hops-")

    from ray import serve

    from pipelines.runtime import ensure_ray
    from pipelines.settings import get_settings

    bare = asyncio.run(grpc_medians(args.calls))
    ensure_ray(get_settings())

    @serve.deployment(ray_actor_options={"num_cpus": 0})
    class Echo:
        async def echo(self, x: str) -> str:
            return x

    @serve.deployment(ray_actor_options={"num_cpus": 0})
    class Caller:
        def __init__(self, echo: serve.handle.DeploymentHandle) -> None:
            self.echo = echo

        async def medians(self, calls: int) -> dict[float, float]:
            return {gap: await timed_calls(lambda: self.echo.echo.remote("x"), calls, gap) for gap in GAPS_MS}

    handle = serve.run(Caller.bind(Echo.bind()), name="hops", route_prefix=None)

    async def ask() -> dict[float, float]:  # throughput mode's handles need a running loop
        return await handle.medians.remote(args.calls)

    served = asyncio.run(ask())
    for gap in GAPS_MS:
        print(
            f"busy {gap:4.0f} ms before each call: Serve deployment call p50 {served[gap]:.2f} ms, "
            f"bare gRPC p50 {bare[gap]:.2f} ms (ratio {served[gap] / bare[gap]:.1f})"
        )
    serve.delete("hops")
    emit(
        args,
        {
            "calls": args.calls,
            "gaps_ms": list(GAPS_MS),
            "served_p50_ms": [served[g] for g in GAPS_MS],
            "bare_grpc_p50_ms": [bare[g] for g in GAPS_MS],
            "ratio": [served[g] / bare[g] for g in GAPS_MS],
        },
    )


if __name__ == "__main__":
    main()
