"""Embedding throughput: the full Ray pipeline (read → embed → write → index) against the bare
encoder (`SentenceTransformer.encode` in one process), on the same texts in the same run.

    python benchmarks/embed_throughput.py [--json]        # CPU: ratio, and 1 vs 2 actors
    python benchmarks/embed_throughput.py --encoder-only --device cuda --rows 50000 --max-chars 300
                                                          # GPU: sentences/s of the encoder alone

Prints rows/s and ratios; nothing is asserted (these machines are noisy).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.corpus import chunk_frame, passages
from benchmarks.report import add_json_flag, emit

V100_PUBLISHED = 14_200  # sentences/s, all-MiniLM-L6-v2 on a V100 (sbert.net model table)


def bare_encoder(texts: list[str], model: str, device: str, batch_size: int, fp16: bool) -> float:
    import torch
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(model, device=device, local_files_only=True)
    if fp16 and device == "cuda":
        st.half()
    st.encode(texts[: batch_size * 2], batch_size=batch_size)  # warm-up
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    st.encode(texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True)
    if device == "cuda":
        torch.cuda.synchronize()
    return len(texts) / (time.perf_counter() - start)


def breakdown(texts: list[str], model: str, device: str, batch_size: int) -> tuple[float, float]:
    """(tokenizer rows/s, model forward rows/s on pre-tokenized batches): where encode spends its time."""
    import torch
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(model, device=device, local_files_only=True)
    if device == "cuda":
        st.half()
    batches = [texts[i : i + batch_size] for i in range(0, len(texts), batch_size)]
    start = time.perf_counter()
    prepare = getattr(st, "preprocess", None) or st.tokenize
    features = [prepare(b) for b in batches]
    tok = len(texts) / (time.perf_counter() - start)
    features = [
        {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in f.items()} for f in features
    ]
    with torch.inference_mode():
        st(features[0])
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for f in features:
            st(f)
        if device == "cuda":
            torch.cuda.synchronize()
    return tok, len(texts) / (time.perf_counter() - start)


def pipeline(texts: list[str], model: str | None, actors: int, batch_size: int) -> tuple[float, float]:
    """(warm rows/s between the first and the last written batch, cold rows/s including start-up)."""
    from data_contracts import check_index_rows
    from pipelines.index.embedding import embed_collection
    from pipelines.ingest import tables as ingest
    from pipelines.store import Store

    store = Store(tempfile.mkdtemp(prefix="rl-bench-"))
    collection = f"bench{actors}"
    chunks = chunk_frame(texts)
    ingest.write_chunks(store, collection, [], chunks)
    marks: list[tuple[float, int]] = []
    start = time.perf_counter()
    result = embed_collection(
        store,
        collection,
        model_path=model,
        batch_size=batch_size,
        actors=actors,
        write_every=256,
        on_progress=lambda done, total: marks.append((time.perf_counter(), done)),
        check=check_index_rows,  # as the embed flow does
    )
    total = time.perf_counter() - start
    assert result.embedded == len(texts), result
    (t0, n0), (t1, n1) = marks[0], marks[-1]
    warm = (n1 - n0) / (t1 - t0) if t1 > t0 else float("nan")
    return warm, len(texts) / total


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=3000)
    p.add_argument("--max-chars", type=int, default=600, help="cut passages to this length")
    p.add_argument("--model", default=None, help="local model folder (default: the packaged MiniLM)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--encoder-only", action="store_true", help="only the bare encoder (e.g. on a GPU box)")
    p.add_argument("--actors", type=int, nargs="+", default=[1, 2])
    p.add_argument("--texts", type=Path, help="a JSON list of passages to use instead of docstrings")
    p.add_argument("--save-texts", type=Path, help="write the passages used to this JSON file")
    add_json_flag(p)
    args = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

    if args.texts:
        texts = [t[: args.max_chars] for t in json.loads(args.texts.read_text())[: args.rows]]
    else:
        texts = passages(args.rows, max_chars=args.max_chars)
    if args.save_texts:
        args.save_texts.write_text(json.dumps(texts))
    model = args.model
    if model is None:
        from pipelines.models import default_embedding_model_path

        model = str(default_embedding_model_path())
    mean_chars = sum(map(len, texts)) / len(texts)
    print(
        f"{len(texts)} docstring passages, mean {mean_chars:.0f} chars; model {model}; device {args.device}"
    )

    bare = bare_encoder(texts, model, args.device, args.batch_size, fp16=True)
    print(f"bare encoder (SentenceTransformer.encode, one process): {bare:,.1f} rows/s")
    if args.device == "cuda":
        import torch

        print(
            f"GPU: {torch.cuda.get_device_name(0)}, fp16; published V100 figure {V100_PUBLISHED:,}/s "
            f"-> ratio {bare / V100_PUBLISHED:.2f}"
        )
    tok, fwd = breakdown(texts, model, args.device, args.batch_size)
    print(f"  of which: tokenizer alone {tok:,.1f} rows/s; model forward alone {fwd:,.1f} rows/s")
    figures: dict[str, object] = {
        "rows": len(texts),
        "device": args.device,
        "bare_rows_per_s": bare,
        "tokenizer_rows_per_s": tok,
        "forward_rows_per_s": fwd,
    }
    if args.encoder_only:
        emit(args, figures)
        return

    from pipelines.runtime import ensure_ray
    from pipelines.settings import Settings

    ensure_ray(Settings(data_dir=Path(tempfile.mkdtemp(prefix="rl-"))))
    by_actors = {}
    for n in args.actors:
        warm, cold = pipeline(texts, args.model, n, args.batch_size)
        by_actors[n] = warm
        figures[f"pipeline_rows_per_s_{n}_actors"] = warm
        figures[f"pipeline_cold_rows_per_s_{n}_actors"] = cold
        print(
            f"ray pipeline, {n} actor(s): warm {warm:,.1f} rows/s (ratio to bare {warm / bare:.2f}); "
            f"cold incl. start-up {cold:,.1f} rows/s"
        )
    if len(by_actors) > 1:
        lo, hi = min(by_actors), max(by_actors)
        print(f"scaling {lo} -> {hi} actors: x{by_actors[hi] / by_actors[lo]:.2f}")
        figures["scaling"] = by_actors[hi] / by_actors[lo]
    figures["ratio"] = max(by_actors.values()) / bare  # the pipeline's best warm rate / the bare encoder
    emit(args, figures)


if __name__ == "__main__":
    main()
