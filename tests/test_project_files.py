"""The project's deployment files load and name real things."""

import importlib
from pathlib import Path

import yaml
from prefect.client.schemas.schedules import CronSchedule

from deployments import SERVE_GPU, SERVE_LOCAL
from serving.config import load_serve_config

ROOT = Path(__file__).resolve().parents[1]


def test_prefect_yaml_entrypoints_are_flows_and_schedules_are_valid() -> None:
    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    names = set()
    for d in spec["deployments"]:
        module_path, func = d["entrypoint"].split(":")
        module = importlib.import_module(module_path.removesuffix(".py").replace("/", "."))
        flow = getattr(module, func)
        assert hasattr(flow, "deploy") and hasattr(flow, "serve"), f"{d['entrypoint']} is not a Prefect flow"
        assert set(d.get("parameters", {})) <= set(flow.parameters.properties), d["name"]
        for s in d.get("schedules", []):
            CronSchedule(cron=s["cron"], timezone=s.get("timezone"))
        assert d["work_pool"]["name"] == "ragline-local"
        names.add(d["name"])
    assert "refresh-sample" in names
    refresh = next(d for d in spec["deployments"] if d["name"] == "refresh-sample")
    assert refresh["schedules"] and refresh["concurrency_limit"] == 1


def test_serve_configs_name_real_deployments() -> None:
    from serving import app

    real = {"ChatIngress", "QueryEmbedder", "RetrieverService", "GeneratorService"}
    assert all(hasattr(app, n) for n in real)
    # CPU: the ingress searches and embeds itself; GPU: the retriever and the embedder are
    # deployments of their own.
    for path, graph in ((SERVE_LOCAL, real - {"QueryEmbedder", "RetrieverService"}), (SERVE_GPU, real)):
        cfg = load_serve_config(path)
        assert set(cfg.deployments) == graph, path
        assert cfg.args["default_collection"] == "sample"
        placement = "deployment" if path == SERVE_GPU else "inline"
        assert cfg.args.get("query_embedder", "inline") == cfg.args.get("retriever", "inline") == placement
    assert load_serve_config(SERVE_GPU).deployments["GeneratorService"]["ray_actor_options"]["num_gpus"] == 1
