"""Load: concurrent clients on /v1/search and /v1/chat for a fixed time, then the same with one Serve
replica killed half-way.

    python benchmarks/load.py [--seconds 30] [--search-clients 8] [--chat-clients 1] [--json]
                              [--chat-max-tokens 16] [--kill-replica RetrieverService] [--url URL]

Without --url it builds the sample corpus in a fresh data dir and starts the app itself: the CPU
graph with two ingress replicas (each searches itself), or for --kill-replica RetrieverService or
QueryEmbedder serve-gpu.yaml's graph with two replicas of each (a killed one leaves one to answer). With
--url it drives a running service; --kill-replica then needs this process to reach that app's Ray
cluster (RAY_ADDRESS) and its Serve app name (--app). Prints requests/s, p50/p95/p99 and the errors
per route; exits 1 if any request failed (a degraded chat answer is counted, not failed).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.report import add_json_flag, emit, pct
from benchmarks.serve_latency import QUESTIONS

ROUTES = ("/v1/search", "/v1/chat")


@dataclass
class Tally:
    latencies_ms: list[float] = field(default_factory=list)
    done_at: list[float] = field(default_factory=list)  # perf_counter of each success: req/s over time
    errors: list[str] = field(default_factory=list)
    degraded: int = 0


async def _client(url: str, route: str, i: int, deadline: float, max_tokens: int, tally: Tally) -> None:
    import httpx

    async with httpx.AsyncClient(timeout=300) as c:
        n = i
        while time.perf_counter() < deadline:
            q = QUESTIONS[n % len(QUESTIONS)]
            body = {"query": q} if route == "/v1/search" else {"message": q, "max_tokens": max_tokens}
            t = time.perf_counter()
            try:
                r = await c.post(f"{url}{route}", json=body)
                if r.status_code == 200:
                    tally.latencies_ms.append((time.perf_counter() - t) * 1000)
                    tally.done_at.append(time.perf_counter())
                    tally.degraded += bool(r.json().get("degraded"))
                else:
                    tally.errors.append(f"{r.status_code} {r.text[:200]}")
            except httpx.HTTPError as exc:
                tally.errors.append(f"{type(exc).__name__}: {exc}")
            n += 1


async def _kill_later(delay: float, app: str, deployment: str, replicas_left: int) -> str:
    from serving import replicas

    await asyncio.sleep(delay)
    t = time.perf_counter()
    killed = await asyncio.to_thread(replicas.kill_replica, app, deployment)
    await asyncio.to_thread(replicas.wait_replaced, app, deployment, killed, replicas_left)
    took = time.perf_counter() - t
    return f"killed {killed.rsplit('#', 1)[-1]} at {delay:.0f} s; Serve replaced it in {took:.1f} s"


async def run_phase(
    args: argparse.Namespace, url: str, kill: str | None
) -> tuple[dict[str, Tally], float, str, float]:
    tallies = {route: Tally() for route in ROUTES}
    deadline = time.perf_counter() + args.seconds
    clients = [
        _client(url, route, i, deadline, args.chat_max_tokens, tallies[route])
        for route, count in (("/v1/search", args.search_clients), ("/v1/chat", args.chat_clients))
        for i in range(count)
    ]
    start = time.perf_counter()
    killer = [_kill_later(args.seconds / 2, args.app, kill, args.replicas)] if kill else []
    results = await asyncio.gather(*clients, *killer)
    note = results[-1] if kill else ""
    return tallies, time.perf_counter() - start, note, start


def over_time(tallies: dict[str, Tally], start: float, seconds: float, buckets: int = 10) -> list[float]:
    """Requests/s (all routes) in `buckets` equal slices of the phase: a soak's drift shows here."""
    width = seconds / buckets
    counts = [0] * buckets
    for t in tallies.values():
        for at in t.done_at:
            counts[min(buckets - 1, int((at - start) / width))] += 1
    return [c / width for c in counts]


def report(label: str, tallies: dict[str, Tally], seconds: float, note: str, start: float) -> int:
    print(f"{label} ({seconds:.0f} s){': ' + note if note else ''}")
    print("  req/s over time: " + " ".join(f"{r:.1f}" for r in over_time(tallies, start, seconds)))
    failed = 0
    for route, t in tallies.items():
        if not t.latencies_ms and not t.errors:
            continue
        lat = t.latencies_ms or [0.0]
        extra = f", {t.degraded} degraded" if route == "/v1/chat" else ""
        print(
            f"  {route:<11} {len(t.latencies_ms):>5} ok  {len(t.latencies_ms) / seconds:6.2f} req/s  "
            f"p50 {pct(lat, 0.5):7.0f} ms  p95 {pct(lat, 0.95):7.0f} ms  p99 {pct(lat, 0.99):7.0f} ms  "
            f"errors {len(t.errors)}{extra}"
        )
        for e in sorted(set(t.errors))[:5]:
            print(f"      error: {e}")
        failed += len(t.errors)
    return failed


def replica_memory() -> dict[str, int]:
    """Resident memory of each live Serve replica process on this machine (bytes), by process
    title (`ray::ServeReplica:<app>:<deployment>`, plus its pid). Read from the processes, not
    Ray's state API: the local Ray runs without the dashboard that API needs."""
    import psutil

    out = {}
    for p in psutil.process_iter(["cmdline", "memory_info"]):
        title = (p.info["cmdline"] or [""])[0]
        if title.startswith("ray::ServeReplica") and p.info["memory_info"]:
            out[f"{title.split()[0].removeprefix('ray::')} ({p.pid})"] = p.info["memory_info"].rss
    return out


def memory_growth(before: dict[str, int], after: dict[str, int]) -> dict[str, float]:
    """Per replica alive at both ends: (end - start) / start."""
    return {k: (after[k] - before[k]) / before[k] for k in before.keys() & after.keys() if before[k]}


def start_service(args: argparse.Namespace) -> str:
    os.environ["RAGLINE_DATA_DIR"] = tempfile.mkdtemp(prefix="rl-load-")
    import flows  # noqa: F401
    from flows.refresh import refresh_flow
    from pipelines.sample import write_sample_corpus
    from pipelines.settings import get_settings
    from serving import runner

    settings = get_settings()
    sources = write_sample_corpus(settings.root / "corpus")
    refresh_flow([str(s) for s in sources], "sample")
    # The CPU default graph: the ingress replicas search and embed themselves. Killing the
    # retriever or the embedder takes serve-gpu.yaml's graph, where each is a deployment.
    # N replicas of each (--replicas), sized to fit 2 CPUs beside the generator.
    two = {"autoscaling_config": {"min_replicas": args.replicas, "max_replicas": args.replicas}}
    update: dict[str, str] = {"serve_log_level": "WARNING"}
    if args.kill_replica in ("RetrieverService", "QueryEmbedder"):
        update |= {"retriever": "deployment", "query_embedder": "deployment"}
        overrides = {
            "QueryEmbedder": {**two, "ray_actor_options": {"num_cpus": 0.25}},
            "RetrieverService": {**two, "ray_actor_options": {"num_cpus": 0.1}},
        }
    else:
        overrides = {"ChatIngress": {**two, "ray_actor_options": {"num_cpus": 0.25}}}
    return runner.start(settings.model_copy(update=update), overrides)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", help="a running service; default: start one on the sample corpus")
    p.add_argument("--app", default="ragline", help="its Serve app name (for --kill-replica)")
    p.add_argument("--seconds", type=float, default=30, help="per phase")
    p.add_argument("--search-clients", type=int, default=8)
    p.add_argument("--chat-clients", type=int, default=1)
    p.add_argument("--chat-max-tokens", type=int, default=16)
    p.add_argument("--kill-replica", metavar="DEPLOYMENT", help="e.g. RetrieverService, QueryEmbedder")
    p.add_argument(
        "--replicas",
        type=int,
        default=2,
        help="replicas of the ingress, or of the embedder and retriever",
    )
    add_json_flag(p)
    args = p.parse_args()

    url = args.url or start_service(args)
    if args.url and args.kill_replica:
        import ray

        ray.init(address=os.environ.get("RAY_ADDRESS", "auto"), logging_level="ERROR")
    import httpx

    for q in QUESTIONS:  # warm-up: models loaded, caches filled
        httpx.post(f"{url}/v1/search", json={"query": q}, timeout=60)
    httpx.post(f"{url}/v1/chat", json={"message": QUESTIONS[0], "max_tokens": 4}, timeout=300)

    clients = f"{args.search_clients} search + {args.chat_clients} chat clients"
    memory_start = replica_memory() if not args.url or args.kill_replica else {}
    steady = asyncio.run(run_phase(args, url, None))
    memory_end = replica_memory() if memory_start else {}
    failed = report(f"steady, {clients}", *steady)
    growth = memory_growth(memory_start, memory_end)
    for name, g in sorted(growth.items()):
        print(f"  {name}: {memory_start[name] / 2**20:.0f} -> {memory_end[name] / 2**20:.0f} MiB ({g:+.1%})")
    tallies, seconds = steady[0], steady[1]
    figures: dict[str, object] = {
        "seconds": seconds,
        "req_per_s": sum(len(t.latencies_ms) for t in tallies.values()) / seconds,
        "req_per_s_over_time": over_time(tallies, steady[3], seconds),
        "routes": {
            route: {
                "ok": len(t.latencies_ms),
                "p50_ms": pct(t.latencies_ms, 0.5),
                "p95_ms": pct(t.latencies_ms, 0.95),
                "errors": len(t.errors),
            }
            for route, t in tallies.items()
        },
        "max_memory_growth": max(growth.values(), default=None),
        "replica_memory_mib": {k: [memory_start[k] / 2**20, memory_end[k] / 2**20] for k in growth},
    }
    if args.kill_replica:
        label = f"one {args.kill_replica} replica killed half-way, {clients}"
        failed += report(label, *asyncio.run(run_phase(args, url, args.kill_replica)))
    figures["errors"] = failed
    if not args.url:
        from serving import runner

        runner.stop()
    emit(args, figures)
    if failed:
        print(f"{failed} requests failed", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
