"""Fine-tuning the embedder on a collection's training pairs: sentence-transformers' trainer with a
contrastive loss (in-batch and hard negatives), run as a Ray Train job (`TorchTrainer`), so the same
code takes a GPU worker on a cluster and the local Ray here. A time budget stops it cleanly; the
model it returns is a local sentence-transformers folder that records where it came from
(`ragline.json`, part of its fingerprint: a tuned model never passes for its base).
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pipelines.models import offline_env, resolve_embedding_model
from pipelines.optimization.pairs import TrainingPairs

log = logging.getLogger(__name__)
LINEAGE_FILE = "ragline.json"
Progress = Callable[[int, int, float], None]  # step, of steps, loss


@dataclass(frozen=True)
class FinetuneConfig:
    epochs: int = 1
    batch_size: int = 32
    learning_rate: float = 3e-5
    warmup_ratio: float = 0.1
    max_seq_length: int = 128  # what MiniLM was trained at; passages past it are cut in training only
    time_budget_s: float = 600.0  # the whole job: start-up, training and saving
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 2 or self.time_budget_s <= 0 or self.learning_rate <= 0:
            raise ValueError("epochs >= 1, batch_size >= 2, a positive learning rate and time budget")


@dataclass
class FinetuneResult:
    model_path: Path
    base_model: str
    steps: int
    planned_steps: int
    loss: float | None
    seconds: float
    stopped_by_budget: bool
    pairs: dict[str, int]
    device: str

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "model_path": str(self.model_path)}


def _train_loop(cfg: dict[str, Any]) -> None:
    """Runs on the Ray Train worker: train, then report the model folder as the checkpoint."""
    offline_env()
    import ray.train
    import torch
    from datasets import Dataset
    from ray.train import Checkpoint
    from sentence_transformers.training_args import BatchSamplers
    from transformers import TrainerCallback

    if cfg["threads"]:
        torch.set_num_threads(cfg["threads"])
    deadline, queue = cfg["deadline"], cfg["progress"]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model, loss, trainer_cls, args_cls = _model_and_loss(cfg, device)
    data = Dataset.from_dict(cfg["columns"])
    state: dict[str, Any] = {"loss": None, "stopped": False}

    class Budget(TrainerCallback):  # type: ignore[misc]
        """Stops at the deadline (leaving time to save) and sends progress to the driver."""

        def on_log(self, args: Any, st: Any, control: Any, logs: Any = None, **kw: Any) -> None:
            if logs and "loss" in logs:
                state["loss"] = float(logs["loss"])

        def on_step_end(self, args: Any, st: Any, control: Any, **kw: Any) -> None:
            if queue is not None:
                queue.put_nowait((st.global_step, st.max_steps, state["loss"] or 0.0))
            if time.time() > deadline:
                state["stopped"] = True
                control.should_training_stop = True

    with tempfile.TemporaryDirectory() as work:
        args = args_cls(
            output_dir=work,
            num_train_epochs=cfg["epochs"],
            per_device_train_batch_size=cfg["batch_size"],
            learning_rate=cfg["learning_rate"],
            warmup_ratio=cfg["warmup_ratio"],
            seed=cfg["seed"],
            # an embedder's duplicate in a batch is a false in-batch negative
            batch_sampler=BatchSamplers.NO_DUPLICATES
            if cfg["kind"] == "embedder"
            else BatchSamplers.BATCH_SAMPLER,
            save_strategy="no",
            logging_steps=1,
            report_to="none",
            disable_tqdm=True,
            dataloader_num_workers=0,
            use_cpu=device == "cpu",
            fp16=device == "cuda",  # mixed precision on a GPU worker: about twice the steps
            ddp_static_graph=cfg["kind"] == "reranker",  # one worker; the cross-encoder trips DDP otherwise
        )
        trainer = trainer_cls(model=model, args=args, train_dataset=data, loss=loss, callbacks=[Budget()])
        trainer.train()
        out = Path(work) / "model"
        model.save(str(out))
        metrics = {
            "steps": int(trainer.state.global_step),
            "planned_steps": int(trainer.state.max_steps),
            "loss": state["loss"],
            "stopped_by_budget": state["stopped"],
            "device": device,
        }
        ray.train.report(metrics, checkpoint=Checkpoint.from_directory(str(out)))


def _model_and_loss(cfg: dict[str, Any], device: str) -> tuple[Any, Any, Any, Any]:
    """The model to train, its loss, and sentence-transformers' trainer and arguments classes: a
    bi-encoder with a contrastive loss (in-batch and hard negatives), or a cross-encoder, started
    from the same weights, scoring (question, passage) as relevant or not."""
    if cfg["kind"] == "reranker":
        from sentence_transformers.cross_encoder import (
            CrossEncoder,
            CrossEncoderTrainer,
            CrossEncoderTrainingArguments,
            losses,
        )

        ce = CrossEncoder(
            cfg["base"],
            num_labels=1,
            device=device,
            local_files_only=True,
            max_length=2 * cfg["max_seq_length"],
        )
        return ce, losses.BinaryCrossEntropyLoss(ce), CrossEncoderTrainer, CrossEncoderTrainingArguments
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
        losses,
    )

    model = SentenceTransformer(cfg["base"], device=device, local_files_only=True)
    model.max_seq_length = min(model.max_seq_length or cfg["max_seq_length"], cfg["max_seq_length"])
    loss = losses.MultipleNegativesRankingLoss(model)
    return model, loss, SentenceTransformerTrainer, SentenceTransformerTrainingArguments


class EmbedderTrainer:
    """Fine-tunes a sentence-transformers model (a local folder; None: the packaged MiniLM) on
    `TrainingPairs`, as a one-worker Ray Train job. `fit` returns the tuned model's folder."""

    kind = "embedder"

    def columns(self, pairs: TrainingPairs) -> dict[str, list[Any]]:
        return pairs.columns()

    def __init__(
        self,
        base_model: str | Path | None = None,
        config: FinetuneConfig | None = None,
        *,
        storage: str | Path,
        use_gpu: bool | None = None,
    ) -> None:
        self.base_model = resolve_embedding_model(base_model)
        self.config = config or FinetuneConfig()
        self.storage = Path(storage)
        self.use_gpu = use_gpu

    def to_dict(self) -> dict[str, Any]:
        return {"base_model": str(self.base_model), **asdict(self.config), "use_gpu": self.use_gpu}

    def planned_steps(self, pairs: TrainingPairs) -> int:
        rows = len(next(iter(self.columns(pairs).values())))
        return self.config.epochs * math.ceil(rows / self.config.batch_size)

    def fit(
        self, pairs: TrainingPairs, dest: Path, lineage: dict[str, Any], on_progress: Progress | None = None
    ) -> FinetuneResult:
        """Train on PAIRS and write the model to DEST (replaced), with LINEAGE in its ragline.json."""
        import ray
        from ray.train import RunConfig, ScalingConfig
        from ray.train.torch import TorchTrainer
        from ray.util.queue import Queue

        from pipelines.runtime import node_resources

        columns = self.columns(pairs)
        rows = len(next(iter(columns.values())))
        if rows < self.config.batch_size // 2:
            raise ValueError(
                f"too few training pairs to fine-tune ({rows}): add qrels, feedback or documents"
            )
        started = time.time()
        gpus = max((n.get("GPU", 0.0) for n in node_resources()), default=0.0)
        use_gpu = bool(gpus) if self.use_gpu is None else self.use_gpu
        node_cpus = max(1, int(max((n.get("CPU", 0.0) for n in node_resources()), default=1.0)))
        # What is free, not whole cores: a running Serve app holds fractions of the CPUs.
        cpus = round(max(0.5, min(float(node_cpus), float(ray.available_resources().get("CPU", 1.0)))), 2)
        queue = Queue() if on_progress else None
        # The worker stops training early enough to save and report within the budget.
        cfg = {
            **asdict(self.config),
            "kind": self.kind,
            "base": str(self.base_model),
            "columns": columns,
            "threads": 0 if use_gpu else node_cpus,
            "deadline": started + self.config.time_budget_s * 0.9,
            "progress": queue,
        }
        trainer = TorchTrainer(
            _train_loop,
            train_loop_config=cfg,
            scaling_config=ScalingConfig(
                num_workers=1, use_gpu=use_gpu, resources_per_worker={"CPU": 0 if use_gpu else cpus}
            ),
            run_config=RunConfig(name=f"finetune-{int(started)}", storage_path=str(self.storage)),
        )
        stop = threading.Event()
        relay = threading.Thread(target=_relay, args=(queue, on_progress, stop), daemon=True)
        if queue is not None and on_progress is not None:
            relay.start()
        try:
            result = trainer.fit()
        finally:
            stop.set()
            if relay.is_alive():
                relay.join(timeout=5)
            if queue is not None:
                queue.shutdown()
        if result.error is not None:
            raise RuntimeError(f"fine-tuning failed: {result.error}") from result.error
        if result.checkpoint is None:
            raise RuntimeError("fine-tuning reported no model")
        tmp = dest.with_name(dest.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        result.checkpoint.to_directory(str(tmp))
        metrics = result.metrics
        out = FinetuneResult(
            model_path=dest,
            base_model=str(self.base_model),
            steps=int(metrics["steps"]),
            planned_steps=int(metrics["planned_steps"]),
            loss=metrics.get("loss"),
            seconds=round(time.time() - started, 1),
            stopped_by_budget=bool(metrics["stopped_by_budget"]),
            pairs=pairs.counts(),
            device=str(metrics["device"]),
        )
        record = {
            "name": dest.name,  # the model's name wherever its folder lies (index_table names carry it)
            "base_model": out.base_model,
            "pairs": out.pairs,
            "config": asdict(self.config),
            **lineage,
        }
        (tmp / LINEAGE_FILE).write_text(json.dumps(record, indent=1, sort_keys=True, default=str))
        shutil.rmtree(dest, ignore_errors=True)
        tmp.rename(dest)  # published whole: a reader never sees half a model
        return out


class RerankerTrainer(EmbedderTrainer):
    """Trains a cross-encoder (the reranking stage) from the same base weights on the same pairs:
    (question, positive) labelled 1, (question, hard negative) labelled 0."""

    kind = "reranker"

    def columns(self, pairs: TrainingPairs) -> dict[str, list[Any]]:
        cols = pairs.columns()
        negatives = cols.get("negative", [])
        return {
            "query": cols["anchor"] + cols["anchor"][: len(negatives)],
            "passage": cols["positive"] + negatives,
            "label": [1.0] * len(cols["anchor"]) + [0.0] * len(negatives),
        }


def _relay(queue: Any, on_progress: Progress | None, stop: threading.Event) -> None:
    """Hands the worker's (step, steps, loss) to ON_PROGRESS, at most once a second."""
    last = 0.0
    while not stop.is_set():
        try:
            step, steps, loss = queue.get(timeout=0.5)
        except Exception:  # Empty, or the queue went away with the job
            continue
        if on_progress and (time.monotonic() - last >= 1.0 or step == steps):
            last = time.monotonic()
            on_progress(step, steps, loss)


def register_embedder(
    settings: Any,
    collection: str,
    result: FinetuneResult,
    *,
    index_table: str,
    scores: dict[str, float],
    promoted: bool,
) -> dict[str, str]:
    """Log the tuned model in the active MLflow run (sentence-transformers flavor) as a new version
    of `<collection>-embedder`, with its lineage as tags; {"name", "version", "uri"}."""
    import mlflow
    from sentence_transformers import SentenceTransformer

    name = f"{collection}-embedder"
    model = SentenceTransformer(str(result.model_path), device="cpu", local_files_only=True)
    lineage = json.loads((result.model_path / LINEAGE_FILE).read_text())
    info = mlflow.sentence_transformers.log_model(
        model,
        name="embedder",
        registered_model_name=name,
        # explicit: inferring them would load the model once more in a subprocess
        pip_requirements=["sentence-transformers", "torch", "transformers"],
        await_registration_for=60,
    )
    version = str(info.registered_model_version)
    client = mlflow.MlflowClient(settings.mlflow_uri)
    # The lineage file is part of the model's fingerprint: a node that fetches the model from MLflow
    # must get the very fingerprint its index table records.
    data_path = mlflow.sentence_transformers.SENTENCE_TRANSFORMERS_DATA_PATH
    client.log_model_artifact(info.model_id, str(result.model_path / LINEAGE_FILE), artifact_path=data_path)
    tags = {
        "base_model": result.base_model,
        "pairs": json.dumps(result.pairs),
        "params": json.dumps(lineage.get("config", {})),
        "index_table": index_table,
        "steps": str(result.steps),
        "stopped_by_budget": str(result.stopped_by_budget),
        "promoted": str(promoted),
        **{k.replace("@", "_at_"): str(round(v, 6)) for k, v in scores.items()},
    }
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
    return {"name": name, "version": version, "uri": f"models:/{name}/{version}"}
