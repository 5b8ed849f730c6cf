"""Index: chunks become vectors. `embedding` holds the `Embedder` (a sentence-transformers model
from a local folder) and the batch embedding of a collection on Ray Data into its LanceDB index
table, one table per embedding model; `indexes` builds that table's full-text and ANN indexes.
Only new or changed chunks are embedded: a re-run costs what changed."""

from pipelines.index.embedding import Embedder, EmbedResult, embed_collection, model_fingerprint, model_name
from pipelines.index.indexes import ANN_MIN_ROWS, build_indexes, update_indexes

__all__ = [
    "ANN_MIN_ROWS",
    "EmbedResult",
    "Embedder",
    "build_indexes",
    "embed_collection",
    "model_fingerprint",
    "model_name",
    "update_indexes",
]
