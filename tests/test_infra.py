"""The cluster configs load and name real entry points, settings and deployments."""

from pathlib import Path

import typer
import yaml

from pipelines.settings import Settings
from ragline.cli import app

ROOT = Path(__file__).resolve().parents[1]
INFRA = ROOT / "infra" / "ray"
IMAGE = "ghcr.io/ragline/ragline:latest"


def _load(name: str) -> dict:
    return yaml.safe_load((INFRA / name).read_text())


def _containers(spec: dict) -> list[dict]:
    groups = [spec["headGroupSpec"], *spec["workerGroupSpecs"]]
    return [c for g in groups for c in g["template"]["spec"]["containers"]]


def _is_setting(env_name: str) -> bool:
    return env_name.removeprefix("RAGLINE_").lower() in Settings.model_fields


def test_rayjob_runs_a_real_ragline_command() -> None:
    job = _load("kuberay/rayjob-embed.yaml")
    argv = job["spec"]["entrypoint"].split()
    assert argv[0] == "ragline"
    command = typer.main.get_command(app)
    sub = command.commands[argv[1]]  # type: ignore[attr-defined]
    sub.make_context(argv[1], argv[2:])  # the arguments parse
    env = yaml.safe_load(job["spec"]["runtimeEnvYAML"])["env_vars"]
    assert all(_is_setting(k) for k in env if k.startswith("RAGLINE_"))
    containers = _containers(job["spec"]["rayClusterSpec"])
    assert {c["image"] for c in containers} == {IMAGE}
    assert any("nvidia.com/gpu" in c["resources"]["limits"] for c in containers)


def test_rayservice_is_the_gpu_serve_config() -> None:
    svc = _load("kuberay/rayservice.yaml")
    serve_config = yaml.safe_load(svc["spec"]["serveConfigV2"])
    assert serve_config == yaml.safe_load((ROOT / "deployments" / "serve-gpu.yaml").read_text())
    assert {c["image"] for c in _containers(svc["spec"]["rayClusterConfig"])} == {IMAGE}


def test_raycluster_and_launcher() -> None:
    cluster = _load("kuberay/raycluster.yaml")
    containers = _containers(cluster["spec"])
    assert {c["image"] for c in containers} == {IMAGE}
    assert all(
        _is_setting(e["name"])
        for c in containers
        for e in c.get("env", [])
        if e["name"].startswith("RAGLINE_")
    )
    launcher = _load("cluster.yaml")
    assert launcher["head_node_type"] in launcher["available_node_types"]
    assert "gpu_worker" in launcher["available_node_types"]
    assert any(".[gpu]" in cmd for cmd in launcher["setup_commands"])
    dockerfile = (INFRA / "Dockerfile").read_text()
    assert "pip install --no-cache-dir -e '.[gpu]'" in dockerfile and "ray:2.60.0" in dockerfile
