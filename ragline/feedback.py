"""`ragline feedback export -c X DEST`: the ratings users gave in the chat page (`/v1/feedback`) as
an evaluation set and training pairs, to review before use.

DEST gets the BEIR layout (`queries.jsonl`, `qrels/test.tsv`, `answers.jsonl`) plus `ratings.jsonl`
(every rated answer with its cited passages: what `ragline finetune --feedback DEST` trains on) and
a README with the counts. A rated-up answer's cited documents are relevant (qrel 1) and its answer
is an accepted one; a rated-down answer's cited documents are judged not relevant (qrel 0): a
thumbs-down counts against the passages it cited. Ratings: 1 (the page's thumbs-up) and 4-5 are
up, -1 and 2 are down, 3 is neutral. Every rating is counted: exported, or skipped with its reason.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Annotated, Any

import typer

from ragline.console import AsJson, Collection, Verbose, fail, out, print_result, setup

feedback_app = typer.Typer(
    no_args_is_help=True, help="What users rated in the chat page, for review and training."
)


def direction(rating: int) -> int:
    """+1 up, -1 down, 0 neutral."""
    if rating in (1, 4, 5):
        return 1
    return -1 if rating in (-1, 2) else 0


def export(
    rated: list[dict[str, Any]], chunks: dict[str, dict[str, str]], collection: str, dest: Path
) -> dict[str, Any]:
    """Write RATED (SessionStore.rated_answers) of COLLECTION to DEST; CHUNKS: chunk id -> its
    doc_id, title and text. The latest rating of an answer stands for it."""
    latest: dict[str, dict[str, Any]] = {}
    skipped: Counter[str] = Counter()
    for row in rated:
        meta = row["meta"]
        if meta.get("collection") != collection:
            skipped["another collection" if meta.get("collection") else "no collection recorded"] += 1
        elif not meta.get("question"):
            skipped["no question recorded"] += 1
        else:
            if row["message_id"] in latest:
                skipped["an earlier rating of the same answer"] += 1
            latest[row["message_id"]] = row
    queries, qrels, answers, ratings = [], [], [], []
    for message_id, row in latest.items():
        meta, sign = row["meta"], direction(int(row["rating"]))
        passages = [{"chunk_id": c, **chunks[c]} for c in meta.get("cited") or [] if c in chunks]
        if sign == 0:
            skipped["neutral rating"] += 1
            continue
        if not passages:
            skipped["no cited passage still in the collection"] += 1
            continue
        qid = f"fb-{message_id[:12]}"
        queries.append({"_id": qid, "text": meta["question"], "rating": sign})
        for doc_id in dict.fromkeys(p["doc_id"] for p in passages):
            qrels.append(f"{qid}\t{doc_id}\t{1 if sign > 0 else 0}")
        if sign > 0 and not meta.get("refused"):
            answers.append({"_id": qid, "answers": [row["answer"]]})
        ratings.append(
            {
                "query_id": qid,
                "message_id": message_id,
                "question": meta["question"],
                "answer": row["answer"],
                "rating": sign,
                "raw_rating": int(row["rating"]),
                "comment": row["comment"],
                "rated_at": str(row["rated_at"]),
                "config_version": meta.get("config_version"),
                "passages": passages,
            }
        )
    (dest / "qrels").mkdir(parents=True, exist_ok=True)
    _jsonl(dest / "queries.jsonl", queries)
    _jsonl(dest / "answers.jsonl", answers)
    _jsonl(dest / "ratings.jsonl", ratings)
    (dest / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"{r}\n" for r in qrels)
    )
    counts = {
        "collection": collection,
        "ratings": len(rated),
        "exported": len(ratings),
        "up": sum(r["rating"] > 0 for r in ratings),
        "down": sum(r["rating"] < 0 for r in ratings),
        "skipped": dict(skipped),
        "dest": str(dest),
    }
    assert counts["exported"] + sum(skipped.values()) == len(rated), counts  # every rating accounted for
    (dest / "README.md").write_text(
        f"# Feedback of `{collection}`\n\n"
        f"{counts['exported']} rated answers ({counts['up']} up, {counts['down']} down) "
        f"of {len(rated)} ratings; skipped: {json.dumps(dict(skipped))}.\n\n"
        "Review before use: a rating says what one user thought of one answer. `qrels/test.tsv` marks the "
        "documents a rated-up answer cited as relevant (1) and those a rated-down answer cited as not "
        "relevant (0). Use it with `ragline evaluate --dataset` and `ragline finetune --feedback`.\n"
    )
    return counts


def _jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in rows))


@feedback_app.command("export")
def export_command(
    dest: Annotated[Path, typer.Argument(help="folder to write the evaluation set and ratings to")],
    collection: Collection = "sample",
    as_json: AsJson = False,
    verbose: Verbose = False,
) -> None:
    """Export the collection's rated answers: BEIR layout plus ratings.jsonl, to review before use."""
    settings = setup(verbose)
    import polars as pl

    from pipelines.store import Store
    from serving.sessions import SessionStore

    if dest.exists() and any(dest.iterdir()):
        fail(f"{dest} is not empty: export into a new folder", 2)
    store = Store.from_settings(settings)
    if not store.has(collection, "chunks"):
        fail(f"collection {collection!r} has no chunks", 2)
    frame = pl.from_arrow(store.chunks(collection).to_arrow().select(["id", "doc_id", "title", "text"]))
    assert isinstance(frame, pl.DataFrame)
    chunks = {r.pop("id"): r for r in frame.iter_rows(named=True)}
    counts = export(SessionStore(settings.sessions_database).rated_answers(), chunks, collection, dest)
    if not as_json:
        out.print(f"[green]✓[/] {counts['exported']} rated answers written to {dest} (review before use)")
    print_result(counts, as_json, f"feedback export {collection}")
