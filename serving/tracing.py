"""MLflow tracing of chat requests (`RAGLINE_TRACE_REQUESTS=true`): one trace per answer, with a
`retrieve` and a `generate` span, in the `ragline-serving` experiment of the settings' tracking URI.

The trace is written once the answer is made, from the times the request recorded: no span is
open while the request awaits other deployments, so nothing depends on context crossing `await`s,
and MLflow exports it off the request path (asynchronously).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipelines.settings import Settings

if TYPE_CHECKING:
    from serving.observability import RequestContext
    from serving.schemas import ChatResponse

EXPERIMENT = "ragline-serving"
REQUEST_ID_TAG = "ragline.request_id"


class ChatTracer:
    def __init__(self, settings: Settings) -> None:
        import mlflow

        mlflow.set_tracking_uri(settings.mlflow_uri)
        client = mlflow.MlflowClient()
        found = client.get_experiment_by_name(EXPERIMENT)
        if found is None:
            try:
                artifacts = (
                    settings.mlflow_artifacts.as_uri() if settings.mlflow_tracking_uri is None else None
                )
                self.experiment_id = client.create_experiment(EXPERIMENT, artifact_location=artifacts)
            except Exception:  # another replica created it first
                self.experiment_id = client.get_experiment_by_name(EXPERIMENT).experiment_id  # type: ignore[union-attr]
        else:
            self.experiment_id = found.experiment_id

    def trace_chat(self, ctx: RequestContext, question: str, response: ChatResponse) -> None:
        import mlflow

        end = ctx.wall_ns(max(s[1] for s in ctx.spans.values()))
        root = mlflow.start_span_no_context(
            "chat",
            span_type="CHAIN",
            inputs={"message": question},
            attributes={"request_id": ctx.request_id, "session_id": response.session_id},
            tags={REQUEST_ID_TAG: ctx.request_id, "ragline.collection": str(ctx.fields.get("collection"))},
            experiment_id=self.experiment_id,
            start_time_ns=ctx.started_ns,
        )
        if "retrieve" in ctx.spans:
            start, stop, info = ctx.spans["retrieve"]
            embed = ctx.spans.get("embed")
            self._span(
                root,
                "retrieve",
                "RETRIEVER",
                ctx,
                (start, stop),
                inputs={"query": info["query"]},
                outputs={"hits": info["hits"]},
                attributes={
                    "config_version": info["version"],
                    **({"embed_ms": round((embed[1] - embed[0]) * 1000, 1)} if embed else {}),
                },
            )
        start, stop, _ = ctx.spans["generate"]
        self._span(
            root,
            "generate",
            "LLM",
            ctx,
            (start, stop),
            inputs={"question": question, "sources": len(response.sources)},
            outputs={"answer": response.answer, "usage": response.usage.model_dump()},
            attributes={"model": response.model, "degraded_reason": response.degraded_reason or ""},
            error=response.degraded,
        )
        root.end(
            outputs={"answer": response.answer, "degraded": response.degraded},
            attributes={"config_version": response.config_version},
            end_time_ns=end,
        )

    @staticmethod
    def _span(
        parent: Any,
        name: str,
        kind: str,
        ctx: RequestContext,
        window: tuple[float, float],
        inputs: dict[str, Any],
        outputs: dict[str, Any],
        attributes: dict[str, Any],
        error: bool = False,
    ) -> None:
        import mlflow

        span = mlflow.start_span_no_context(
            name,
            span_type=kind,
            parent_span=parent,
            inputs=inputs,
            attributes=attributes,
            start_time_ns=ctx.wall_ns(window[0]),
        )
        span.end(outputs=outputs, status="ERROR" if error else "OK", end_time_ns=ctx.wall_ns(window[1]))
