"""Document feature engineering with polars expressions (no per-row Python):
normalisation, PII detection/redaction, script and ASCII ratio, near-duplicates (MinHash + LSH)."""

from __future__ import annotations

import polars as pl

EMAIL = r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"
# Digit runs of 13-19 with optional single spaces/dashes; checked before phones, which they contain.
CARD = r"\b(?:\d[ -]?){12,18}\d\b"
# Three digit groups, optionally with a country code or a bracketed area code: "555-123-4567",
# "+44 20 7946 0958", "(555) 123-4567". Two groups ("1822-1997") are not phones.
PHONE = r"(?:\+\d{1,3}[ .-]?)?\(?\d{2,4}\)?[ .-]\d{3,4}[ .-]\d{3,4}\b"
SCRIPTS = {
    "latin": r"\p{Latin}",
    "cyrillic": r"\p{Cyrillic}",
    "greek": r"\p{Greek}",
    "arabic": r"\p{Arabic}",
    "hebrew": r"\p{Hebrew}",
    "devanagari": r"\p{Devanagari}",
    "cjk": r"[\p{Han}\p{Hiragana}\p{Katakana}\p{Hangul}]",
}
MINHASH_PERMUTATIONS = 32
LSH_BANDS = 8  # 8 bands x 4 rows: pairs above ~0.7 Jaccard almost always share a band


def normalize(text: pl.Expr) -> pl.Expr:
    """NFKC, unix newlines, no zero-width characters, single spaces within a line, no trailing
    spaces, at most one blank line. A line's leading indentation stays (a tab as four spaces): it
    is the structure of code and nested lists, and a code comment moved to the start of its line
    would read as a Markdown heading."""
    return (
        text.str.normalize("NFKC")
        .str.replace_all(r"\r\n?", "\n")
        .str.replace_all("[\u200b\u200c\u200d\u2060\ufeff]", "")
        .str.replace_all("\t", "    ", literal=True)
        .str.replace_all("\u00a0", " ", literal=True)
        .str.replace_all(r"(\S) {2,}", "${1} ")
        .str.replace_all(r" +\n", "\n")
        .str.replace_all(r"\n{3,}", "\n\n")
        .str.strip_chars()
    )


def pii_counts(text: pl.Expr) -> list[pl.Expr]:
    return [
        text.str.count_matches(EMAIL).alias("pii_emails"),
        text.str.count_matches(CARD).alias("pii_cards"),
        text.str.replace_all(CARD, "").str.count_matches(PHONE).alias("pii_phones"),
    ]


def redact(text: pl.Expr) -> pl.Expr:
    return (
        text.str.replace_all(EMAIL, "[EMAIL]")
        .str.replace_all(CARD, "[CARD]")
        .str.replace_all(PHONE, "[PHONE]")
    )


def script_features(text: pl.Expr) -> list[pl.Expr]:
    n = pl.max_horizontal(text.str.len_chars(), pl.lit(1))
    counts = {name: text.str.count_matches(rx) for name, rx in SCRIPTS.items()}
    best = pl.concat_list(list(counts.values())).list.arg_max()
    names = list(counts)
    dominant = pl.when(pl.sum_horizontal(list(counts.values())) == 0).then(pl.lit("none"))
    for i, name in enumerate(names):
        dominant = dominant.when(best == i).then(pl.lit(name))
    return [
        (text.str.count_matches(r"[\x00-\x7f]") / n).cast(pl.Float32).alias("ascii_ratio"),
        dominant.otherwise(pl.lit("other")).alias("script"),
    ]


def add_document_features(docs: pl.DataFrame, redact_pii: bool = False) -> pl.DataFrame:
    """Normalised (and optionally redacted) text plus feature columns; ids and hashes unchanged."""
    out = docs.with_columns(normalize(pl.col("text")).alias("text"))
    out = out.with_columns(*pii_counts(pl.col("text")), *script_features(pl.col("text")))
    if redact_pii:
        out = out.with_columns(redact(pl.col("text")).alias("text"))
    out = out.with_columns(
        pl.col("text").str.len_chars().cast(pl.Int32).alias("char_count"),
        (pl.col("pii_emails") + pl.col("pii_cards") + pl.col("pii_phones")).cast(pl.Int32).alias("pii_found"),
        pl.lit(redact_pii).alias("pii_redacted"),
    ).drop("pii_emails", "pii_cards", "pii_phones")
    dups = near_duplicates(out.select("id", "text"))
    return out.drop("near_duplicate_of", strict=False).join(dups, on="id", how="left")


def near_duplicates(docs: pl.DataFrame, threshold: float = 0.8, shingle: int = 5) -> pl.DataFrame:
    """(id, near_duplicate_of): the earliest document (in input order) whose estimated Jaccard
    similarity of word 5-gram shingles is >= threshold; null when there is none."""
    if docs.height < 2:
        return docs.select("id").with_columns(pl.lit(None, pl.String).alias("near_duplicate_of"))
    words = (
        docs.with_row_index("doc")
        .select("doc", pl.col("text").str.to_lowercase().str.extract_all(r"\w+").alias("w"))
        .explode("w")
        .drop_nulls("w")
    )
    shingles = (
        words.with_columns(
            pl.concat_str([pl.col("w").shift(-j).over("doc") for j in range(shingle)], separator=" ").alias(
                "s"
            )
        )
        .drop_nulls("s")
        .select("doc", "s")
    )
    short = (
        words.group_by("doc").agg(pl.col("w").str.join(" ").alias("s")).join(shingles, on="doc", how="anti")
    )
    shingles = pl.concat([shingles, short.select("doc", "s")])
    signatures = shingles.group_by("doc").agg(
        [pl.col("s").hash(seed=i).min().alias(f"m{i}") for i in range(MINHASH_PERMUTATIONS)]
    )
    rows = MINHASH_PERMUTATIONS // LSH_BANDS
    bands = pl.concat(
        [
            signatures.select(
                "doc",
                pl.lit(b).alias("band"),
                pl.concat_str([pl.col(f"m{b * rows + r}") for r in range(rows)], separator=":").alias("key"),
            )
            for b in range(LSH_BANDS)
        ]
    )
    pairs = (
        bands.join(bands, on=["band", "key"], suffix="_b")
        .filter(pl.col("doc") < pl.col("doc_b"))
        .select(pl.col("doc").alias("a"), pl.col("doc_b").alias("b"))
        .unique()
    )
    if pairs.is_empty():
        return docs.select("id").with_columns(pl.lit(None, pl.String).alias("near_duplicate_of"))
    sig_a = signatures.rename({c: f"{c}_a" for c in signatures.columns if c != "doc"}).rename({"doc": "a"})
    sig_b = signatures.rename({c: f"{c}_b" for c in signatures.columns if c != "doc"}).rename({"doc": "b"})
    similar = (
        pairs.join(sig_a, on="a")
        .join(sig_b, on="b")
        .with_columns(
            (
                pl.sum_horizontal(
                    [pl.col(f"m{i}_a") == pl.col(f"m{i}_b") for i in range(MINHASH_PERMUTATIONS)]
                )
                / MINHASH_PERMUTATIONS
            ).alias("jaccard")
        )
        .filter(pl.col("jaccard") >= threshold)
        .group_by("b")
        .agg(pl.col("a").min())
    )
    ids = docs.with_row_index("doc").select("doc", "id")
    result = (
        similar.join(ids.rename({"doc": "b"}), on="b")
        .join(ids.rename({"doc": "a", "id": "near_duplicate_of"}), on="a")
        .select("id", "near_duplicate_of")
    )
    return docs.select("id").join(result, on="id", how="left")
