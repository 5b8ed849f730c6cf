"""Serving latency and throughput, each beside a baseline measured in the same run.

    python benchmarks/serve_latency.py [--seconds 30] [--clients 16] [--json]

1. /v1/search through Serve vs the same Retriever (+ query embedding) called in-process, in turns
   per question, one request at a time: p50/p95 and the p50 ratio (goal: Serve adds < 30%), and
   where the served time goes, from the response's timings (benchmarks/serve_hops.py: the floor).
   Two graphs in the same turns: the CPU default (the ingress replica searches and embeds its
   batches itself, `retriever` and `query_embedder: inline`) and serve-gpu.yaml's (a RetrieverService
   and a QueryEmbedder deployment, two crossings more).
2. /v1/search with N concurrent clients for S seconds, query batching on vs off (the searcher's
   batches, each embedded in one forward pass): requests/s, errors. The clients cycle through
   the 16 questions below and the 43 of the sample evaluation set.
3. /v1/chat on the CPU model, streamed: time to first token and tokens/s.
4. /v1/search with the reranking stage at --rerank-depth against the same app without it, in
   alternating passes over the questions: `rerank_added_p50_ms` (goal <= 30 ms). `--reranker
   features` (the default, what `ragline optimize` learns): a feature ranker learned here on the
   sample evaluation set, at the depth it chose. `--reranker cross-encoder`: MiniLM's architecture
   (the packaged weights, as `ragline finetune --reranker` starts from; a trained one costs the same).
Nothing is asserted (these machines are noisy).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.report import add_json_flag, emit, pct

QUESTIONS = [
    "How does the for statement work?",
    "What does the with statement do?",
    "How are exceptions raised?",
    "What is a lambda expression?",
    "How do I define a class?",
    "What does the import statement do?",
    "What are augmented assignment statements?",
    "How does the while loop end?",
    "What is a decorator?",
    "How do comparisons chain?",
    "What does yield do in a function?",
    "What is the global statement?",
    "How are keyword arguments passed?",
    "What does assert do?",
    "How do slices work?",
    "What is a coroutine?",
]


def all_questions() -> list[str]:
    from pipelines.evaluation.evalsets import BUNDLED

    lines = (BUNDLED / "queries.jsonl").read_text(encoding="utf-8").splitlines()
    return QUESTIONS + [json.loads(line)["text"] for line in lines if line.strip()]


def learn_ranker(settings: Any, embedder: Any, retriever: Any, args: argparse.Namespace) -> Path:
    """A feature ranker learned on the sample evaluation set (as `ragline optimize` learns one on
    its search split), saved in the data dir; ARGS.rerank_depth defaults to the depth it chose."""
    from flows.evaluate import load_evalset
    from pipelines.evaluation.evalsets import BUNDLED
    from pipelines.optimization.ranker import fit, judge, train_ranker

    evalset, _ = load_evalset(str(BUNDLED), "sample")
    judged = judge(retriever, embedder, evalset)
    result = train_ranker(judged, evalset.qrels)
    print(f"   feature ranker: {result.reason}")
    args.rerank_depth = args.rerank_depth or result.depth or 20
    # not kept: measured all the same (its cost does not depend on its weights)
    ranker = result.ranker or fit(judged, args.rerank_depth, 0.3)
    assert ranker is not None
    return ranker.save(settings.root / "rerankers" / "sample" / "benchmark")


async def load(url: str, clients: int, seconds: float) -> tuple[float, int, int]:
    """CLIENTS keep-alive connections posting searches back to back. aiohttp (Ray Serve's own
    dependency), not httpx: the clients share the service's 2 cores, and httpx spent ~1.6 ms of CPU
    per request there, aiohttp about a third of that."""
    import aiohttp

    questions = all_questions()
    done = errors = 0
    deadline = time.perf_counter() + seconds

    async def client(session: aiohttp.ClientSession, i: int) -> None:
        nonlocal done, errors
        n = i
        while time.perf_counter() < deadline:
            body = {"query": questions[n % len(questions)]}
            async with session.post(f"{url}/v1/search", json=body) as r:
                await r.read()
                done += r.status == 200
                errors += r.status != 200
            n += 1

    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=clients)) as s:
        start = time.perf_counter()
        await asyncio.gather(*(client(s, i) for i in range(clients)))
        return done / (time.perf_counter() - start), done, errors


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=30)
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--rounds", type=int, default=3, help="passes over the questions for latency")
    p.add_argument("--reranker", choices=("features", "cross-encoder"), default="features")
    p.add_argument(
        "--rerank-depth", type=int, help="part 4's depth (default: the feature ranker's; cross-encoder: 5)"
    )
    add_json_flag(p)
    args = p.parse_args()
    os.environ["RAGLINE_DATA_DIR"] = tempfile.mkdtemp(prefix="rl-serve-")
    from pipelines.models import default_embedding_model_path

    # the app can rerank (part 4) but does not until its retrieval config says a depth
    if args.reranker == "cross-encoder":
        os.environ["RAGLINE_RERANKER_MODEL"] = str(default_embedding_model_path())
        args.rerank_depth = args.rerank_depth or 5

    import httpx
    from ray import serve

    import flows  # noqa: F401
    from flows.refresh import refresh_flow
    from pipelines.index.embedding import Embedder
    from pipelines.retrieval import Retriever
    from pipelines.sample import write_sample_corpus
    from pipelines.settings import get_settings
    from pipelines.store import Store
    from serving import runner
    from serving.app import searcher_deployment

    settings = get_settings()
    sources = write_sample_corpus(settings.root / "corpus")
    refresh_flow([str(s) for s in sources], "sample")

    embedder, retriever = Embedder(threads=1), Retriever(Store.from_settings(settings), "sample")
    if args.reranker == "features":
        ranker = learn_ranker(settings, embedder, retriever, args)
        settings = settings.model_copy(update={"reranker_model": str(ranker)})
    url = runner.start(settings)
    # serve-gpu.yaml's graph beside it, holding no CPUs: the same searches, one crossing more
    zero = {"ray_actor_options": {"num_cpus": 0}}
    split_settings = settings.model_copy(update={"query_embedder": "deployment", "retriever": "deployment"})
    names = ("ChatIngress", "QueryEmbedder", "RetrieverService", "GeneratorService")
    split = runner.start(split_settings, dict.fromkeys(names, zero), name="split", route_prefix="/split")
    questions = all_questions()
    inproc, served, served_split = [], [], []
    parts: dict[str, list[float]] = {k: [] for k in ("embed", "search", "http", "call", "emb_call", "own")}
    with httpx.Client(timeout=30) as c:
        for q in questions:  # warm-up, every way
            c.post(f"{url}/v1/search", json={"query": q})
            c.post(f"{split}/v1/search", json={"query": q})
            retriever.retrieve(q, embedder.embed([q])[0])
        # In turns, question by question: the machine's noise falls on both alike.
        for _ in range(args.rounds):
            for q in questions:
                t = time.perf_counter()
                vector = embedder.embed([q])[0]
                t_embed = time.perf_counter()
                retriever.retrieve(q, vector)
                inproc.append((time.perf_counter() - t) * 1000)
                parts["embed"].append((t_embed - t) * 1000)
                parts["search"].append(inproc[-1] - parts["embed"][-1])
                t = time.perf_counter()
                r = c.post(f"{url}/v1/search", json={"query": q})
                served.append((time.perf_counter() - t) * 1000)
                assert r.status_code == 200, r.text
                timings = r.json()["timings"]
                parts["http"].append(served[-1] - timings["retrieval_ms"])
                parts["call"].append(timings["retrieval_ms"] - timings["embed_ms"] - timings["search_ms"])
                parts["emb_call"].append(timings["embed_ms"])
                parts["own"].append(timings["search_ms"])
                t = time.perf_counter()
                r = c.post(f"{split}/v1/search", json={"query": q})
                served_split.append((time.perf_counter() - t) * 1000)
                assert r.status_code == 200, r.text
    serve.delete("split")
    p50_in, p50_srv = statistics.median(inproc), statistics.median(served)
    p50_split = statistics.median(served_split)
    print(
        f"1. /v1/search latency over {len(served)} requests: Serve p50 {p50_srv:.1f} ms, p95 "
        f"{pct(served, 0.95):.1f} ms; in-process retriever p50 {p50_in:.1f} ms, "
        f"p95 {pct(inproc, 0.95):.1f} ms; "
        f"Serve adds {100 * (p50_srv / p50_in - 1):.0f}% at p50 (ratio {p50_srv / p50_in:.2f})"
    )
    print(
        f"   the retriever and query embedder as deployments of their own (serve-gpu.yaml's graph): p50 "
        f"{p50_split:.1f} ms (ratio {p50_split / p50_in:.2f} to in-process)"
    )
    med = {k: statistics.median(v) for k, v in parts.items()}
    print(
        f"   medians through Serve: HTTP + ingress {med['http']:.1f} ms, ingress -> searcher "
        f"{med['call']:.1f} ms, the batch's query embedding {med['emb_call']:.1f} ms (in-process "
        f"embedding {med['embed']:.1f} ms), search {med['own']:.1f} ms (in-process "
        f"search {med['search']:.1f} ms; its full-text part runs during the embedding)"
    )

    figures: dict[str, object] = {
        "served_p50_ms": p50_srv,
        "served_p95_ms": pct(served, 0.95),
        "inprocess_p50_ms": p50_in,
        "inprocess_p95_ms": pct(inproc, 0.95),
        "ratio": p50_srv / p50_in,
        "deployment_graph_p50_ms": p50_split,
        "deployment_graph_ratio": p50_split / p50_in,
        "breakdown_ms": med,
    }
    searcher = searcher_deployment(settings)
    off = {"max_batch_size": 1}  # and every search at once, as if there were no batcher
    for label, configs in (
        ("batching on", {searcher: {}}),
        ("batching off", {searcher: {**off, "max_concurrent_batches": 64}}),
    ):
        runner.update_user_config(settings, configs)
        time.sleep(2)
        rps, ok, errors = asyncio.run(load(url, args.clients, args.seconds))
        key = "req_per_s" if label == "batching on" else "req_per_s_unbatched"
        figures[key], figures[f"errors_{key}"] = rps, errors
        print(
            f"2. /v1/search, {args.clients} clients x {args.seconds:.0f} s, {label}: {rps:.1f} requests/s "
            f"({ok} ok, {errors} errors)"
        )

    streams = []
    for q in QUESTIONS[:3]:
        t0 = time.perf_counter()
        first = None
        tokens = 0
        with httpx.stream(
            "POST", f"{url}/v1/chat", json={"message": q, "stream": True, "max_tokens": 80}, timeout=300
        ) as r:
            for line in r.iter_lines():
                if line.startswith("event: token") and first is None:
                    first = time.perf_counter() - t0
                if line.startswith("data: ") and '"usage"' in line:
                    tokens = json.loads(line[6:])["usage"]["completion_tokens"]
        total = time.perf_counter() - t0
        gen = total - (first or 0)
        rate = tokens / gen if gen > 0 else 0
        streams.append({"first_token_ms": 1000 * (first or 0), "tokens_per_s": rate})
        print(
            f"3. /v1/chat stream: first token {1000 * (first or 0):.0f} ms, {tokens} tokens in {total:.1f} s "
            f"({tokens / gen if gen > 0 else 0:.1f} tokens/s after the first)"
        )
    with_rerank, without = [], []
    with httpx.Client(timeout=60) as c:
        for round_ in range(2 * args.rounds):
            reranked = round_ % 2 == 1
            runner.update_retrieval(settings, {"rerank_depth": args.rerank_depth} if reranked else {})
            time.sleep(2)
            c.post(f"{url}/v1/search", json={"query": questions[0]})  # the reconfigured replica, warm
            for q in questions:
                t = time.perf_counter()
                r = c.post(f"{url}/v1/search", json={"query": q})
                (with_rerank if reranked else without).append((time.perf_counter() - t) * 1000)
                assert r.status_code == 200, r.text
                version = r.json()["config_version"]
                assert version.endswith(f"+rerank{args.rerank_depth}") is reranked, version
    runner.update_retrieval(settings, {})
    added = statistics.median(with_rerank) - statistics.median(without)
    figures["rerank_depth"] = args.rerank_depth
    figures["rerank_p50_ms"], figures["no_rerank_p50_ms"] = (
        statistics.median(with_rerank),
        statistics.median(without),
    )
    figures["rerank_added_p50_ms"] = added
    print(
        f"4. /v1/search with the reranker at depth {args.rerank_depth}: p50 "
        f"{figures['rerank_p50_ms']:.1f} ms vs {figures['no_rerank_p50_ms']:.1f} ms without: "
        f"+{added:.1f} ms (goal <= 30 ms)"
    )
    runner.stop()
    figures["chat_first_token_ms"] = statistics.median(x["first_token_ms"] for x in streams)
    figures["chat_tokens_per_s"] = statistics.median(x["tokens_per_s"] for x in streams)
    emit(args, figures)


if __name__ == "__main__":
    main()
