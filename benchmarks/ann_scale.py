"""ANN at scale: flat scan beside the ANN index types the store chooses between, filtered search,
and the upkeep of a 1% append, on one index table of N 384-d vectors, in one run.

    python benchmarks/ann_scale.py [--rows 1000000] [--real 2000] [--queries 50] [--dir D] [--keep] [--json]

Vectors: --real are MiniLM embeddings (the project's Embedder) of paragraph-sized pieces of the
sample corpus (`write_sample_corpus`); the rest are drawn from a Gaussian with the real vectors'
mean and covariance (+ a small diagonal ridge), then L2-normalised like the model's output.
Synthetic rows get a few words of the real texts' vocabulary, for the full-text index. Queries:
the sample evaluation set's questions, embedded (perturbed copies when more are asked for).
1. Flat scan (`bypass_vector_index`, cosine) top-10 per query: p50/p95, and the ground truth.
2. IVF_PQ and IVF_HNSW_SQ (num_partitions = rows // 4096, as pipelines/index/indexes.py): build
   time, then p50/p95 and recall@10 over nprobes (x refine_factor for PQ). Chosen: the fastest
   setting with recall@10 >= 0.95, else the most accurate. Filtered search (prefilter, ~10%).
3. Append 1% rows, then `table.optimize()` (as `update_indexes`): (add + optimize) / (ANN + FTS
   build) is append_ratio; and whether a new row is found by vector and by text search.
Nothing is asserted (these machines are noisy).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.report import add_json_flag, emit, median, pct

DIM = 384
CHUNK_ROWS = 100_000
SHARDS = 10  # source_uri takes one of these values: a filter on one selects ~10% of rows
RECALL_GOAL = 0.95
NPROBES = (10, 20, 40, 80, 160)  # of rows // 4096 partitions (244 at 1M)
REFINE = (10, 30, 60)


def real_texts(dest: Path, n: int) -> list[str]:
    """Paragraph-sized pieces (40..1000 chars) of the sample corpus, up to N of them."""
    from pipelines.ingest.sources import read_sources
    from pipelines.sample import write_sample_corpus

    out: list[str] = []
    for doc in read_sources(write_sample_corpus(dest)).documents:
        for para in re.split(r"\n\s*\n", doc.text):
            para = " ".join(para.split())
            while len(para) > 1000:
                cut = para.rfind(" ", 0, 800)
                cut = cut if cut > 0 else 800
                out.append(para[:cut])
                para = para[cut:].strip()
            if len(para) >= 40:
                out.append(para)
    return out[:n]


def query_texts() -> list[str]:
    from pipelines.sample import SAMPLE_EVAL

    lines = (SAMPLE_EVAL / "queries.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line)["text"] for line in lines if line.strip()]


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


class Gaussian:
    """N(mean, cov + ridge*I) fitted on the real vectors; samples are L2-normalised."""

    def __init__(self, real: np.ndarray, rng: np.random.Generator, ridge: float = 1e-4) -> None:
        self.mean = real.mean(axis=0, dtype=np.float64)
        cov = np.cov(real, rowvar=False) + ridge * np.eye(real.shape[1])
        self.chol = np.linalg.cholesky(cov)
        self.rng = rng

    def sample(self, n: int) -> np.ndarray:
        z = self.rng.standard_normal((n, self.mean.shape[0]))
        return unit(self.mean + z @ self.chol.T)


def rows_table(schema: pa.Schema, start: int, vectors: np.ndarray, texts: list[str], kind: str) -> pa.Table:
    n = len(texts)
    idx = np.arange(start, start + n)
    columns = {
        "id": [f"{kind}{i}" for i in idx],
        "doc_id": [f"d{i // 8}" for i in idx],
        "title": [f"{kind} passage {i}" for i in idx],
        "text": texts,
        "chunk_index": pa.array(idx % 8, pa.int32()),
        "source_uri": [f"bench://shard-{i % SHARDS}" for i in idx],
        "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1), pa.float32()), DIM),
    }
    return pa.Table.from_pydict(columns).select(schema.names).cast(schema)


def words(rng: np.random.Generator, vocab: list[str], n: int, k: int = 6) -> list[str]:
    picks = rng.integers(0, len(vocab), size=(n, k))
    return [" ".join(vocab[j] for j in row) for row in picks]


def marker(j: int) -> str:
    """A word found nowhere else, letters only (no tokenizer splits it): zqx + J's digits as a-j."""
    return "zqx" + "".join(chr(97 + int(c)) for c in f"{j:07d}")


def search(table: Any, vector: np.ndarray, s: dict[str, Any], where: str | None = None) -> list[str]:
    q = table.search(vector).distance_type("cosine").select(["id", "_distance"]).limit(10)
    if s.get("flat"):
        q = q.bypass_vector_index()
    if s.get("nprobes"):
        q = q.nprobes(s["nprobes"])
    if s.get("refine_factor"):
        q = q.refine_factor(s["refine_factor"])
    if where:
        q = q.where(where, prefilter=True)
    return q.to_arrow().column("id").to_pylist()


Truth = list[list[str]] | None


def measure(
    table: Any, queries: np.ndarray, s: dict[str, Any], truth: Truth, where: str | None = None
) -> tuple[list[float], list[list[str]], float]:
    """Per-query ms, the hits, and recall@10 against TRUTH (1.0 without one)."""
    search(table, queries[0], s, where)  # warm-up: index and data into cache
    times, hits = [], []
    for v in queries:
        t = time.perf_counter()
        hits.append(search(table, v, s, where))
        times.append((time.perf_counter() - t) * 1000)
    if truth is None:
        return times, hits, 1.0
    recall = [len(set(h) & set(g)) / max(1, len(g)) for h, g in zip(hits, truth, strict=True)]
    return times, hits, float(np.mean(recall))


def index_config(kind: str, rows: int) -> Any:
    """IVF_PQ exactly as the store builds it; IVF_HNSW_SQ with the same partitions."""
    from lancedb.index import IvfHnswSq

    from pipelines.index.indexes import ann_config

    config = ann_config(rows, DIM)
    if kind == "IVF_PQ":
        return config
    return IvfHnswSq(distance_type="cosine", num_partitions=config.num_partitions)


def pick(cands: list[dict[str, Any]]) -> dict[str, Any]:
    good = [c for c in cands if c["recall_at_10"] >= RECALL_GOAL]
    if good:
        return min(good, key=lambda c: c["p50_ms"])
    return max(cands, key=lambda c: (c["recall_at_10"], -c["p50_ms"]))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--real", type=int, default=2000, help="how many rows are real embeddings")
    p.add_argument("--queries", type=int, default=50)
    p.add_argument("--dir", type=Path, default=None, help="where the table goes (default: a temp dir)")
    p.add_argument("--keep", action="store_true", help="leave the table behind")
    p.add_argument(
        "--types", default="IVF_PQ,IVF_HNSW_SQ", help="the ANN index types to compare (comma-separated)"
    )
    add_json_flag(p)
    args = p.parse_args()
    work = args.dir or Path(tempfile.mkdtemp(prefix="rl-ann-"))
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    try:
        figures = run(args, work)
    finally:
        if not args.keep:
            shutil.rmtree(work if args.dir is None else work / "lancedb", ignore_errors=True)
            shutil.rmtree(work / "sample-corpus", ignore_errors=True)
    figures["total_s"] = time.perf_counter() - started
    print(f"total {figures['total_s']:.0f} s" + (f"; table kept in {work}" if args.keep else ""), flush=True)
    emit(args, figures)


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from pipelines.index.embedding import Embedder
    from pipelines.models import resolve_embedding_model
    from pipelines.retrieval.query import where_clause
    from pipelines.store import Store

    rng = np.random.default_rng(0)
    texts = real_texts(work / "sample-corpus", min(args.real, args.rows))
    embedder = Embedder(resolve_embedding_model(None), threads=2)
    t = time.perf_counter()
    real = embedder.embed(texts)
    embed_s = time.perf_counter() - t
    print(f"embedded {len(texts)} real sample-corpus pieces in {embed_s:.1f} s", flush=True)
    gauss = Gaussian(real.astype(np.float64), rng)
    method = (
        f"{len(texts)} real MiniLM embeddings of sample-corpus paragraphs; the other "
        f"{args.rows - len(texts)} drawn from N(mean, cov + 1e-4 I) fitted on them, L2-normalised"
    )
    print(f"vectors: {method}", flush=True)
    counts = Counter(w for s in texts for w in re.findall(r"[a-z]{4,12}", s.lower()))
    vocab = [w for w, _ in counts.most_common(400)]

    table = Store(str(work / "lancedb")).index_table("annscale", embedder.info)
    t = time.perf_counter()
    table.add(rows_table(table.schema, 0, real, texts, "r"))
    written = len(texts)
    while written < args.rows:
        n = min(CHUNK_ROWS, args.rows - written)
        table.add(rows_table(table.schema, written, gauss.sample(n), words(rng, vocab, n), "s"))
        written += n
        print(f"  {written:,} / {args.rows:,} rows written", flush=True)
    write_s = time.perf_counter() - t
    t = time.perf_counter()
    table.optimize()  # compact the write chunks, as update_indexes leaves a table after each write
    compact_s = time.perf_counter() - t
    print(f"wrote {written:,} rows in {write_s:.1f} s, compacted in {compact_s:.1f} s", flush=True)

    qtexts = query_texts()
    base = embedder.embed(qtexts)
    extra = max(0, args.queries - len(base))
    noisy = unit(base[np.arange(extra) % len(base)] + rng.normal(0, 0.01, (extra, DIM)))
    queries = np.concatenate([base, noisy])[: args.queries].astype(np.float32)
    print(f"queries: {min(len(base), args.queries)} evaluation questions + {extra} perturbed copies")

    flat = {"flat": True}
    flat_times, truth, _ = measure(table, queries, flat, None)
    where = where_clause({"source_uri": "bench://shard-3"})
    f_times, f_truth, _ = measure(table, queries, flat, None, where)
    share = table.count_rows(where) / written
    print(
        f"flat scan: p50 {median(flat_times):.1f} ms, p95 {pct(flat_times, 0.95):.1f} ms; "
        f"filtered ({where}: {share:.1%} of rows) p50 {median(f_times):.1f} ms",
        flush=True,
    )

    t = time.perf_counter()
    table.create_fts_index("text", replace=True)
    fts_build_s = time.perf_counter() - t
    print(f"FTS index on text built in {fts_build_s:.1f} s", flush=True)

    partitions = index_config("IVF_PQ", args.rows).num_partitions
    probes = sorted({min(n, partitions) for n in NPROBES})
    candidates: list[dict[str, Any]] = []
    per_type: dict[str, dict[str, Any]] = {}
    for kind in args.types.split(","):
        t = time.perf_counter()
        table.create_index("vector", config=index_config(kind, args.rows), replace=True)
        build_s = time.perf_counter() - t
        print(f"{kind} ({partitions} partitions) built in {build_s:.1f} s", flush=True)
        grid = (
            [{"nprobes": n, "refine_factor": r} for n in probes for r in REFINE]
            if kind == "IVF_PQ"
            else [{"nprobes": n} for n in probes]
        )
        mine = []
        for s in grid:
            times, _, recall = measure(table, queries, s, truth)
            c = {"type": kind, **s, "build_s": build_s, "p50_ms": median(times)}
            c |= {"p95_ms": pct(times, 0.95), "recall_at_10": recall}
            mine.append(c)
            print(f"  {s}: p50 {c['p50_ms']:.1f} ms, p95 {c['p95_ms']:.1f} ms, recall@10 {recall:.3f}")
        best = pick(mine)
        times, _, recall = measure(table, queries, best, f_truth, where)
        best |= {"filtered_p50_ms": median(times), "filtered_p95_ms": pct(times, 0.95)}
        best["filtered_recall_at_10"] = recall
        print(f"  filtered, {kind}'s pick: p50 {median(times):.1f} ms, recall@10 {recall:.3f}", flush=True)
        candidates += mine
        per_type[kind] = best

    chosen = pick(list(per_type.values()))
    kind = chosen["type"]
    if kind != args.types.split(",")[-1]:  # the last one built: put the chosen one back for the append
        print(f"rebuilding {kind} (chosen) for the append", flush=True)
        table.create_index("vector", config=index_config(kind, args.rows), replace=True)
    index: dict[str, Any] = {"type": kind, "num_partitions": partitions, "distance": "cosine"}
    index |= {"nprobes": chosen["nprobes"]}
    if kind == "IVF_PQ":
        index |= {"num_sub_vectors": index_config(kind, args.rows).num_sub_vectors}
        index |= {"refine_factor": chosen["refine_factor"]}
    else:
        index |= {"m": 20, "ef_construction": 300}  # LanceDB's defaults, which indexes.py keeps
    print(f"chosen: {index}", flush=True)

    n_new = max(1, args.rows // 100)
    new_vectors = gauss.sample(n_new)
    markers = [marker(j) for j in range(n_new)]
    new_texts = [f"{w} {m}" for w, m in zip(words(rng, vocab, n_new, 5), markers, strict=True)]
    new = rows_table(table.schema, args.rows, new_vectors, new_texts, "n")
    t = time.perf_counter()
    table.add(new)
    add_s = time.perf_counter() - t
    t = time.perf_counter()
    table.optimize()
    optimize_s = time.perf_counter() - t
    append_ratio = (add_s + optimize_s) / (chosen["build_s"] + fts_build_s)
    probe = n_new // 2
    new_id = f"n{args.rows + probe}"
    found_vector = search(table, new_vectors[probe], chosen)[:1] == [new_id]
    text_hits = table.search(markers[probe], query_type="fts").select(["id", "_score"]).limit(10).to_arrow()
    found_text = new_id in text_hits.column("id").to_pylist()
    print(
        f"append {n_new:,} rows (1%): add {add_s:.2f} s + optimize {optimize_s:.2f} s = "
        f"{append_ratio:.3f} of the full build ({chosen['build_s']:.1f} s ANN + {fts_build_s:.1f} s FTS); "
        f"new row found by vector search: {found_vector}, by text search: {found_text}",
        flush=True,
    )
    flat_p50 = median(flat_times)
    ann = f"ANN p50 {chosen['p50_ms']:.1f} ms (ratio {chosen['p50_ms'] / flat_p50:.3f})"
    print(f"rows {written:,}: flat p50 {flat_p50:.1f} ms, {ann}, recall@10 {chosen['recall_at_10']:.3f}")
    fig: dict[str, Any] = {"rows": written, "real_rows": len(texts), "vectors": method}
    fig |= {"queries": len(queries)}
    fig |= {"embed_s": embed_s, "write_s": write_s, "compact_s": compact_s}
    fig |= {"flat_p50_ms": flat_p50, "flat_p95_ms": pct(flat_times, 0.95)}
    fig |= {"ann_p50_ms": chosen["p50_ms"], "ann_p95_ms": chosen["p95_ms"]}
    fig |= {"ratio": chosen["p50_ms"] / flat_p50}
    fig |= {"recall_at_10": chosen["recall_at_10"], "build_s": chosen["build_s"], "fts_build_s": fts_build_s}
    fig |= {"index": index, "candidates": candidates, "filter": where, "filter_fraction": share}
    fig |= {"filtered_flat_p50_ms": median(f_times)}
    fig |= {k: chosen[k] for k in ("filtered_p50_ms", "filtered_p95_ms", "filtered_recall_at_10")}
    fig |= {"append_rows": n_new, "append_add_s": add_s, "append_optimize_s": optimize_s}
    fig |= {"append_ratio": append_ratio, "append_found_vector": found_vector}
    fig |= {"append_found_text": found_text}
    return fig


if __name__ == "__main__":
    main()
