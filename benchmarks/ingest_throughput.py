"""Ingest + feature throughput on real passages, beside the cost of only reading and parsing the
same files, in the same run.

    python benchmarks/ingest_throughput.py --docs 20000 [--changed 0.01] [--json]

Prints documents/s and chunks/s per stage and for the whole Prefect flow, and the ratio of the
flow's throughput to bare read+parse (what validation, features and chunking cost). Then the
refresh cost: a re-run with nothing changed and one with a fraction of the files edited, each as
a ratio of the first run (`unchanged_ratio`, `changed_ratio`). Nothing is asserted (these machines
are noisy).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.corpus import passages
from benchmarks.report import add_json_flag, emit


def write_files(texts: list[str], folder: Path) -> None:
    for i, text in enumerate(texts):
        sub = folder / f"part{i // 1000:03d}"
        sub.mkdir(parents=True, exist_ok=True)
        first = text.strip().splitlines()[0][:80]
        (sub / f"doc{i:06d}.txt").write_text(f"{first}\n\n{text}\n", encoding="utf-8")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--docs", type=int, default=20_000)
    p.add_argument("--changed", type=float, default=0.01, help="fraction of files edited for the last run")
    add_json_flag(p)
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="rl-ingest-"))
    os.environ["RAGLINE_DATA_DIR"] = str(work / "data")

    texts = passages(args.docs, min_chars=200)
    folder = work / "corpus"
    write_files(texts, folder)
    size = sum(f.stat().st_size for f in folder.rglob("*.txt"))
    print(f"{len(texts)} docstring passages as files, {size / 1e6:.1f} MB")

    import flows  # noqa: F401  (configures the embedded stack)
    from data_contracts import chunks_suite, documents_suite, validate
    from flows.ingest import ingest_flow
    from pipelines.ingest import tables as lib
    from pipelines.ingest.chunking import Chunker, ChunkingConfig
    from pipelines.ingest.features import add_document_features
    from pipelines.ingest.sources import read_sources
    from pipelines.models import default_embedding_model_path
    from pipelines.settings import get_settings

    settings = get_settings()
    stages: list[tuple[str, float, int]] = []

    def timed(name: str, fn, count=lambda r: 0):  # type: ignore[no-untyped-def]
        start = time.perf_counter()
        out = fn()
        stages.append((name, time.perf_counter() - start, count(out)))
        return out

    batch = timed("read + parse (baseline)", lambda: read_sources([folder]), lambda b: len(b.documents))
    docs = timed("documents frame", lambda: lib.documents_frame(batch.documents), len)
    checked = timed(
        "documents contract (GX)",
        lambda: validate(docs, documents_suite(settings.max_document_bytes)),
        lambda r: r.valid.height,
    )
    featured = timed(
        "features (normalise, PII, script, near-dups)", lambda: add_document_features(checked.valid), len
    )
    chunker = Chunker(
        default_embedding_model_path(), ChunkingConfig(settings.chunk_tokens, settings.chunk_overlap)
    )
    chunks = timed("chunking (tokenizer + polars)", lambda: chunker.chunk(featured), len)
    timed(
        "chunks contract (GX)",
        lambda: validate(chunks, chunks_suite(1, settings.chunk_tokens, featured["id"].to_list())),
        lambda r: r.valid.height,
    )

    print(f"\n{'stage':48} {'seconds':>8} {'rows/s':>10}")
    for name, secs, n in stages:
        print(f"{name:48} {secs:8.2f} {n / secs if secs else 0:10,.0f}")

    ingest_flow([str(folder / "part000" / "doc000000.txt")], "warmup")  # start Prefect's server first
    start = time.perf_counter()
    result = ingest_flow([str(folder)], "bench")
    flow_s = time.perf_counter() - start
    base_s = stages[0][1]
    print(
        f"\nwhole ingest flow (Prefect, LanceDB writes): {flow_s:.1f} s, "
        f"{result['documents'] / flow_s:,.0f} documents/s, {result['chunks'] / flow_s:,.0f} chunks/s "
        f"({result['documents']} documents, {result['chunks']} chunks, {result['quarantined']} quarantined, "
        f"{result['near_duplicates']} near-duplicates, {result['pii_found']} PII matches)"
    )
    print(f"read + parse alone: {len(batch.documents) / base_s:,.0f} documents/s")
    print(
        f"ratio flow / read+parse throughput: {base_s / flow_s:.2f} "
        f"(validation, features, chunking and writes cost x{flow_s / base_s:.1f} the time of parsing)"
    )
    start = time.perf_counter()
    again = ingest_flow([str(folder)], "bench")
    unchanged_s = time.perf_counter() - start
    print(
        f"re-run, nothing changed: {unchanged_s:.1f} s ({unchanged_s / flow_s:.3f} of the first run), "
        f"unchanged {again['unchanged']}"
    )
    files = sorted(folder.rglob("*.txt"))
    edited = files[:: max(1, round(1 / args.changed))] if args.changed > 0 else []
    for f in edited:
        text = f.read_text(encoding="utf-8")
        f.write_text(text + "\nEdited for the refresh benchmark.\n", encoding="utf-8")
    start = time.perf_counter()
    third = ingest_flow([str(folder)], "bench")
    changed_s = time.perf_counter() - start
    print(
        f"re-run, {len(edited)} files ({len(edited) / len(files):.1%}) changed: {changed_s:.1f} s "
        f"({changed_s / flow_s:.3f} of the first run), documents {third['documents']}, "
        f"unchanged {third['unchanged']}"
    )
    emit(
        args,
        {
            "docs": len(texts),
            "first_run_s": flow_s,
            "documents_per_s": result["documents"] / flow_s,
            "chunks_per_s": result["chunks"] / flow_s,
            "flow_vs_parse_ratio": base_s / flow_s,
            "unchanged_s": unchanged_s,
            "unchanged_ratio": unchanged_s / flow_s,
            "changed_docs": len(edited),
            "changed_s": changed_s,
            "changed_ratio": changed_s / flow_s,
            "stages_s": {name: secs for name, secs, _ in stages},
        },
    )


if __name__ == "__main__":
    main()
