import polars as pl

from pipelines.ingest.features import add_document_features, near_duplicates

# About 150 words: a one-word edit changes ~6 of ~150 shingles (Jaccard ~0.92).
BASE = " ".join(
    f"On day {d} the farmer walked along the old wooden fence near the river, counting sheep, "
    f"mending gates and thinking about harvest number {d}."
    for d in range(1, 8)
)


def _docs(texts: list[str]) -> pl.DataFrame:
    return pl.DataFrame({"id": [f"d{i}" for i in range(len(texts))], "text": texts})


def test_normalisation_and_pii_counts_and_redaction() -> None:
    docs = _docs(
        [
            "Write to jane.doe@example.com or call +44 20 7946 0958."
            "\r\n\r\n\r\n\r\nCard: 4111 1111 1111 1111",
            "Fullwidth \uff21\uff22\uff23 and\u200b zero-width,   many    spaces."
            " Years 1822-1997 are not phones.",
        ]
    )
    plain = add_document_features(docs, redact_pii=False)
    assert plain["pii_found"].to_list() == [3, 0]
    assert "jane.doe@example.com" in plain["text"][0]  # detection only unless redaction is on
    assert "\r" not in plain["text"][0] and "\n\n\n" not in plain["text"][0]
    assert plain["text"][1].startswith("Fullwidth ABC and zero-width, many spaces.")
    red = add_document_features(docs, redact_pii=True)
    assert red["text"][0] == "Write to [EMAIL] or call [PHONE].\n\nCard: [CARD]"
    assert red["pii_redacted"].to_list() == [True, True]


def test_script_and_ascii_ratio() -> None:
    f = add_document_features(
        _docs(["plain english text", "Привет, как дела сегодня", "東京は日本の首都です", "1234"])
    )
    assert f["script"].to_list() == ["latin", "cyrillic", "cjk", "none"]
    assert f["ascii_ratio"][0] == 1.0 and f["ascii_ratio"][1] < 0.3


def test_near_duplicates_point_at_the_earliest_copy() -> None:
    edited = BASE.replace("harvest", "harvest season", 1)
    other = "Completely different text about compilers, parsers and type checkers for functional languages."
    result = near_duplicates(_docs([BASE, other, edited, BASE]))
    assert result["near_duplicate_of"].to_list() == [None, None, "d0", "d0"]


def test_near_duplicates_of_tiny_inputs() -> None:
    assert near_duplicates(_docs(["one"]))["near_duplicate_of"].to_list() == [None]
    assert near_duplicates(_docs(["a b", "c d"]))["near_duplicate_of"].to_list() == [None, None]


def test_indentation_survives_normalisation_and_a_code_comment_is_no_heading() -> None:
    from pipelines.ingest.chunking import Chunker, ChunkingConfig
    from pipelines.models import default_embedding_model_path

    text = (
        "# Guide\n\nCall it  like this:   \n\n"
        "    if ready:\n\t# start the engine\n        engine.start()  \n\nThen wait."
    )
    docs = add_document_features(_docs([text]))
    assert docs["text"][0] == (
        "# Guide\n\nCall it like this:\n\n"
        "    if ready:\n    # start the engine\n        engine.start()\n\nThen wait."
    )
    chunker = Chunker(default_embedding_model_path(), ChunkingConfig(chunk_tokens=256, overlap=0))
    chunks = chunker.chunk(
        docs.with_columns(title=pl.lit("t"), content_hash=pl.lit("h"), source_uri=pl.lit("u"))
    )
    # Flattened, "# start the engine" became a heading of its own and split the code block.
    assert chunks["heading"].to_list() == ["Guide"]
    assert "        engine.start()" in chunks["text"][0]
