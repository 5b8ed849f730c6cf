"""The LanceDB store: a collection is a set of tables named `<collection>__<kind>`.

- `documents`, `chunks`, `quarantine`: written by ingestion;
- `index_<model tag>`: vectors + text + metadata for one embedding model, with an ANN index
  (above a size threshold) and a full-text index. Two models never share an index table.
The collection's active index table, and its promoted champion config (MLflow registry alias
`champion`), are recorded in the `ragline_collections` table, which serving re-reads every few seconds.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import lancedb
import pyarrow as pa
from lancedb.background_loop import LOOP

from pipelines import schemas
from pipelines.settings import Settings, validate_collection

REGISTRY = "ragline_collections"
REGISTRY_SCHEMA = pa.schema(
    [
        ("collection", pa.string()),
        ("index_table", pa.string()),
        ("model", pa.string()),
        ("updated_at", pa.timestamp("us", tz="UTC")),
        # JSON of the promoted champion: {"name", "version", "retrieval": {...}, "index_table", ...}
        ("champion", pa.string()),
        # The refusal threshold the latest evaluation learned (generation/refusal.py); serving uses it
        # while no champion brings its own. Vectors of another model void it (set_active_index).
        ("refusal_min_similarity", pa.float64()),
    ]
)


class CollectionNotFoundError(LookupError):
    pass


# Object-store locations (URI and storage options) this process has listed once.
_REACHABLE: set[tuple[str, tuple[tuple[str, str], ...]]] = set()


class StoreUnavailableError(RuntimeError):
    """The LanceDB location cannot be used (a missing bucket, bad credentials, no endpoint)."""


@dataclass(frozen=True)
class ModelInfo:
    """What an index table was built with; a query must use the same model."""

    name: str
    path_hash: str
    dim: int

    @property
    def tag(self) -> str:
        slug = "".join(c if c.isalnum() else "_" for c in self.name.lower()).strip("_")
        return f"{slug}_{self.path_hash[:8]}"


def sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def sql_in(column: str, values: list[str]) -> str:
    return f"{column} IN ({', '.join(sql_str(v) for v in values)})"


class Store:
    def __init__(
        self,
        uri: str,
        read_consistency: timedelta | None = None,
        storage_options: dict[str, str] | None = None,
    ) -> None:
        self.uri = uri
        self.read_consistency = read_consistency
        self.storage_options = storage_options or None
        self._async_db: Any = None
        try:
            self.db = lancedb.connect(
                uri, read_consistency_interval=read_consistency, storage_options=self.storage_options
            )
            where = (uri, tuple(sorted((storage_options or {}).items())))
            if "://" in uri and where not in _REACHABLE:  # object storage: say now, in one line,
                self.db.list_tables(limit=1)  # if it cannot be used (once per process and access)
                _REACHABLE.add(where)
        except Exception as exc:
            if "://" not in uri:
                raise
            raise StoreUnavailableError(f"LanceDB at {uri}: {object_store_reason(exc)}") from None

    @classmethod
    def from_settings(cls, settings: Settings, read_consistency: timedelta | None = None) -> Store:
        """The store of RAGLINE_LANCEDB_URI (a folder under the data dir by default)."""
        return cls(settings.lancedb_location, read_consistency, settings.lancedb_storage_options)

    def open_async(self, name: str) -> Any:
        """A table through LanceDB's async API, for queries on the hot path: it costs a third less
        CPU per query than the sync wrapper and takes several query vectors in one scan. The handle
        is made on LanceDB's background loop and can be awaited from any event loop."""
        if self._async_db is None:
            self._async_db = LOOP.run(
                lancedb.connect_async(
                    self.uri,
                    read_consistency_interval=self.read_consistency,
                    storage_options=self.storage_options,
                )
            )
        return LOOP.run(self._async_db.open_table(name))

    # --- names ---------------------------------------------------------------------------------
    @staticmethod
    def table_name(collection: str, kind: str) -> str:
        return f"{validate_collection(collection)}__{kind}"

    def _names(self) -> set[str]:
        names: set[str] = set()
        token: str | None = None
        while True:  # list_tables is paginated
            page = self.db.list_tables(page_token=token, limit=1000)
            names.update(page.tables)
            token = page.page_token
            if not token or not page.tables:
                return names

    def has(self, collection: str, kind: str) -> bool:
        return self.table_name(collection, kind) in self._names()

    def collections(self) -> list[str]:
        return sorted({n.split("__", 1)[0] for n in self._names() if "__" in n})

    def indexed_collections(self) -> list[str]:
        """The collections that can be searched: an embed run registered an index that exists."""
        if REGISTRY not in self._names():
            return []
        names = self._names()
        rows = self._registry().to_arrow().select(["collection", "index_table"]).to_pylist()
        return sorted(r["collection"] for r in rows if r["index_table"] in names)

    # --- tables --------------------------------------------------------------------------------
    def table(self, collection: str, kind: str, schema: pa.Schema | None = None) -> Any:
        name = self.table_name(collection, kind)
        if name in self._names():
            table = self.db.open_table(name)
            if schema is not None:
                self._add_missing_columns(table, schema)
            return table
        if schema is None:
            raise CollectionNotFoundError(
                f"collection {collection!r} has no {kind} table "
                f"(run `ragline ingest ... -c {collection}` first)"
            )
        return self.db.create_table(name, schema=schema, exist_ok=True)

    def documents(self, collection: str) -> Any:
        return self.table(collection, "documents", schemas.DOCUMENTS)

    def chunks(self, collection: str) -> Any:
        return self.table(collection, "chunks", schemas.CHUNKS)

    def quarantine(self, collection: str) -> Any:
        return self.table(collection, "quarantine", schemas.QUARANTINE)

    @staticmethod
    def _add_missing_columns(table: Any, schema: pa.Schema) -> None:
        """Tables written by an older ragline lack newer columns: add them, all null (a migration
        that costs a metadata commit, not a rewrite)."""
        have = set(table.schema.names)
        missing = [f for f in schema if f.name not in have]
        if missing:
            table.add_columns(missing)

    @staticmethod
    def read_columns(table: Any, columns: list[str]) -> pa.Table:
        """COLUMNS of every row, read alone: `to_arrow()` reads the whole table, text included
        (0.84 s against 0.06 s for two columns of 100,000 documents)."""
        return table.search().select(columns).limit(None).to_arrow()

    @staticmethod
    def upsert(table: Any, data: pa.Table, key: str = "id") -> None:
        """Insert or replace by key: re-running a write never duplicates rows."""
        if data.num_rows == 0:
            return
        table.merge_insert(key).when_matched_update_all().when_not_matched_insert_all().execute(data)

    # --- index tables --------------------------------------------------------------------------
    def index_table(self, collection: str, model: ModelInfo, create: bool = True) -> Any:
        kind = f"index_{model.tag}"
        if not create:
            return self.table(collection, kind)
        schema = schemas.index_schema(model.dim).with_metadata({"ragline.model": json.dumps(asdict(model))})
        return self.table(collection, kind, schema)

    @staticmethod
    def model_of(table: Any) -> ModelInfo:
        meta = table.schema.metadata or {}
        raw = meta.get(b"ragline.model")
        if raw is None:
            raise ValueError(f"table {table.name} records no embedding model")
        return ModelInfo(**json.loads(raw))

    def _registry(self) -> Any:
        if REGISTRY not in self._names():
            return self.db.create_table(REGISTRY, schema=REGISTRY_SCHEMA, exist_ok=True)
        reg = self.db.open_table(REGISTRY)
        self._add_missing_columns(reg, REGISTRY_SCHEMA)  # registries written before champions existed
        return reg

    def _registry_row(self, collection: str) -> dict[str, Any] | None:
        if REGISTRY not in self._names():
            return None
        # Read as it is: a registry from before champions simply has no `champion` key yet.
        table = self.db.open_table(REGISTRY)
        rows = table.search().where(f"collection = {sql_str(collection)}").limit(1).to_list()
        return rows[0] if rows else None

    def _write_registry(self, row: dict[str, Any]) -> None:
        self.upsert(self._registry(), pa.Table.from_pylist([row], schema=REGISTRY_SCHEMA), key="collection")

    def set_active_index(self, collection: str, table_name: str, model: ModelInfo) -> None:
        """Record the index a fresh embed run built; a promoted champion stays promoted."""
        previous = self._registry_row(collection) or {}
        model_json = json.dumps(asdict(model))
        self._write_registry(
            {
                "collection": collection,
                "index_table": table_name,
                "model": model_json,
                "updated_at": datetime.now(UTC),
                "champion": previous.get("champion"),
                "refusal_min_similarity": (
                    previous.get("refusal_min_similarity") if previous.get("model") == model_json else None
                ),
            }
        )

    def set_champion(self, collection: str, champion: dict[str, Any] | None) -> None:
        """Promote a config for serving (None demotes). `champion["index_table"]`, when given, is the
        index table built with the champion's chunking; it must exist."""
        row = self._registry_row(collection)
        if row is None:
            raise CollectionNotFoundError(f"collection {collection!r} has no index to promote a config for")
        table = (champion or {}).get("index_table")
        if table and table not in self._names():
            raise CollectionNotFoundError(f"champion index table {table!r} does not exist")
        row["champion"] = json.dumps(champion) if champion else None
        row["updated_at"] = datetime.now(UTC)
        self._write_registry(row)

    def set_refusal(self, collection: str, min_similarity: float | None) -> None:
        """Record the refusal threshold an evaluation of COLLECTION learned (None forgets it)."""
        row = self._registry_row(collection)
        if row is None:
            raise CollectionNotFoundError(f"collection {collection!r} has no index to calibrate")
        row["refusal_min_similarity"] = min_similarity
        row["updated_at"] = datetime.now(UTC)
        self._write_registry(row)

    def refusal(self, collection: str) -> float | None:
        row = self._registry_row(collection)
        return row.get("refusal_min_similarity") if row else None

    def champion(self, collection: str) -> dict[str, Any] | None:
        row = self._registry_row(collection)
        return json.loads(row["champion"]) if row and row.get("champion") else None

    def index_table_named(self, collection: str, name: str) -> Any:
        """One of COLLECTION's index tables by name (a trial's, not necessarily the active one)."""
        if not name.startswith(f"{validate_collection(collection)}__index_") or name not in self._names():
            raise CollectionNotFoundError(f"collection {collection!r} has no index table {name!r}")
        return self.db.open_table(name)

    def active_index(self, collection: str) -> Any:
        """The index table that serving and evaluation query: the champion's, else the latest built."""
        validate_collection(collection)
        row = self._registry_row(collection)
        if row is not None:
            names = self._names()
            champion_table = (json.loads(row["champion"]) if row.get("champion") else {}).get("index_table")
            for name in (champion_table, row["index_table"]):
                if name and name in names:
                    return self.db.open_table(name)
        raise CollectionNotFoundError(
            f"collection {collection!r} has no index (run `ragline embed -c {collection}` first)"
        )


# What object stores answer, in the words a user can act on (LanceDB's errors are a page long).
_STORE_REASONS = [
    ("NoSuchBucket", "the bucket does not exist"),
    ("InvalidAccessKeyId", "the access key is not known (AWS_ACCESS_KEY_ID)"),
    ("SignatureDoesNotMatch", "the secret key is wrong (AWS_SECRET_ACCESS_KEY)"),
    ("AccessDenied", "access denied by the object store (check the credentials and the bucket policy)"),
    ("resolve region", "no region is set (AWS_REGION or RAGLINE_LANCEDB_STORAGE_OPTIONS)"),
    ("Connection refused", "the endpoint refuses connections (AWS_ENDPOINT_URL)"),
    ("error sending request", "the endpoint cannot be reached (AWS_ENDPOINT_URL)"),
]


def object_store_reason(exc: BaseException) -> str:
    text = str(exc)
    for needle, reason in _STORE_REASONS:
        if needle.lower() in text.lower():
            return reason
    return (text.splitlines() or [type(exc).__name__])[0][:200]
