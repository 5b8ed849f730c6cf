"""ragline on a real two-node Ray cluster, started the standard way on this machine, with LanceDB on
an S3-compatible server on loopback (moto's server mode): what `infra/ray/README.md` tells a
platform team to do, command for command.

- `ray start --head --num-cpus 1` and a worker `ray start --address=<head> --num-cpus 2` (the
  shape that once asked for a 3-CPU actor no node could hold); both nodes get the bucket's AWS_*
  variables and RAGLINE_LANCEDB_URI in their environment, as an instance role and image would.
- `ray job submit -- ragline refresh ...` with one 2-thread actor (RAGLINE_EMBED_ACTORS=1): the
  job's driver runs on the head, the actor on the worker, sized by that node.
- `serve deploy deployments/serve-local.yaml` (a copy on a free port, generator off), then
  `/v1/search` answers from the S3 index; the same with `serve run` until Ctrl-C; `ragline
  evaluate` scores that index from outside.
- The worker node killed during an embedding job, a new one started: the job ends in a clear
  state, and a re-run leaves every chunk exactly once.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from deployments import processes as proc
from deployments.stack import PROJECT_DIR, ensure_ray_token
from pipelines.runtime import SERVE_ENV, haproxy_ports
from pipelines.sample import write_sample_corpus
from pipelines.store import Store
from tests.conftest import free_port
from tests.s3 import s3_server, storage_options

pytestmark = pytest.mark.e2e

BIN = Path(sys.executable).parent
BUCKET = "ragline-cluster"
# Set by the test session's configure(); the cluster derives its own from its data dir.
_INHERITED = ("MLFLOW_TRACKING_URI", "PREFECT_HOME", "PREFECT_API_URL", "RAY_ADDRESS", "RAGLINE_LANCEDB_URI")
_HAPROXY = ("RAY_SERVE_HAPROXY_METRICS_PORT", "RAY_SERVE_HAPROXY_STATS_PORT")
EMBED_ACTOR = "MapWorker(MapBatches(EmbedBatch))"


@dataclass
class Cluster:
    data: Path
    env: dict[str, str]
    s3: dict[str, str]
    stack_id: str
    dashboard: str = ""
    gcs: str = ""
    children: list[proc.Child] = field(default_factory=list)
    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=30))

    def authenticate(self) -> None:
        """The dashboard's REST API wants the cluster's token, as `ray get-auth-token` prints it."""
        token = self.cli("ray", "get-auth-token", "--generate").stdout.strip().splitlines()[-1]
        self.http.headers["Authorization"] = f"Bearer {token}"

    def start_node(self, name: str, args: list[str]) -> proc.Child:
        # A port of its own for each node's HAProxy listeners (a node starts a proxy when Serve runs).
        env = {**self.env, **haproxy_ports(), "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0"}
        cmd = [str(BIN / "ray"), "start", "--block", "--disable-usage-stats", *args]
        child = proc.spawn(name, cmd, env, self.data / "logs" / f"{name}.log", grace_s=20)
        self.children.append(child)
        return child

    def nodes(self) -> list[dict[str, Any]]:
        r = self.http.get(f"{self.dashboard}/api/v0/nodes", params={"limit": 100})
        r.raise_for_status()
        return [n for n in r.json()["data"]["result"]["result"] if n["state"] == "ALIVE"]

    def wait_nodes(self, count: int, timeout_s: float = 120) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                alive = self.nodes()
                if len(alive) == count:
                    return alive
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"{count} nodes not alive in time:\n{self.logs()}"
            time.sleep(1)

    def worker_ids(self) -> set[str]:
        return {n["node_id"] for n in self.nodes() if not n["is_head_node"]}

    def cli(self, *args: str, timeout_s: float = 300) -> subprocess.CompletedProcess[str]:
        """A command of this venv with the cluster's environment, as an operator runs it."""
        return subprocess.run(
            [str(BIN / args[0]), *args[1:]], env=self.env, capture_output=True, text=True, timeout=timeout_s
        )

    def submit(self, *entrypoint: str, env: dict[str, str] | None = None) -> str:
        job_id = f"ragline-{uuid.uuid4().hex[:8]}"
        runtime_env = ["--runtime-env-json", json.dumps({"env_vars": env})] if env else []
        r = self.cli("ray", "job", "submit", "--address", self.dashboard, "--submission-id", job_id,
                     *runtime_env, "--no-wait", "--", *entrypoint)  # fmt: skip
        assert r.returncode == 0, r.stdout + r.stderr
        return job_id

    def job(self, job_id: str) -> dict[str, Any]:
        r = self.http.get(f"{self.dashboard}/api/jobs/{job_id}")
        r.raise_for_status()
        return r.json()

    def job_logs(self, job_id: str) -> str:
        return self.http.get(f"{self.dashboard}/api/jobs/{job_id}/logs").json().get("logs", "")

    def wait_job(self, job_id: str, timeout_s: float = 600) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while (info := self.job(job_id))["status"] not in ("SUCCEEDED", "FAILED", "STOPPED"):
            assert time.monotonic() < deadline, (
                f"job {job_id} still {info['status']}:\n{self.job_logs(job_id)[-3000:]}"
            )
            time.sleep(2)
        return info

    def actors(self, class_name: str) -> list[dict[str, Any]]:
        params = {"limit": 1000, "detail": 1, "filter_keys": "class_name", "filter_predicates": "=",
                  "filter_values": class_name}  # fmt: skip
        r = self.http.get(f"{self.dashboard}/api/v0/actors", params=params)
        r.raise_for_status()
        return r.json()["data"]["result"]["result"]

    def store(self) -> Store:
        # From outside the cluster, with the storage options of settings instead of AWS_* variables.
        return Store(self.env["RAGLINE_LANCEDB_URI"], storage_options=storage_options(self.s3))

    def logs(self, lines: int = 20) -> str:
        parts = []
        for log in sorted((self.data / "logs").glob("*.log")):
            parts.append(
                f"--- {log.name}\n" + "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
            )
        return "\n".join(parts)


@pytest.fixture(scope="module")
def s3() -> Iterator[dict[str, str]]:
    with s3_server(BUCKET) as env:
        yield env


@pytest.fixture(scope="module")
def cluster(s3: dict[str, str]) -> Iterator[Cluster]:
    data = Path(tempfile.mkdtemp(prefix="rlc-"))  # short: Ray's socket paths live below it
    stack_id = uuid.uuid4().hex
    env = {k: v for k, v in os.environ.items() if k not in _INHERITED + _HAPROXY}
    env |= {
        proc.STACK_ENV: stack_id,  # every process of this cluster carries it, for the final sweep
        "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        "RAGLINE_DATA_DIR": str(data / "ragline"),
        "RAGLINE_LANCEDB_URI": f"s3://{BUCKET}/lancedb",
        "RAGLINE_RAY_NUM_CPUS": "",
        # A head turns token auth on by default (token in ~/.ray/auth_token); every node, job and
        # `serve deploy` needs the mode set to present it.
        "RAY_AUTH_MODE": "token",
        **s3,
        **SERVE_ENV,
    }
    env.pop("RAGLINE_RAY_NUM_CPUS")
    c = Cluster(data, env, s3, stack_id)
    try:
        gcs, dash = free_port(), free_port()
        c.gcs, c.dashboard = f"127.0.0.1:{gcs}", f"http://127.0.0.1:{dash}"
        ensure_ray_token(env)  # a fresh machine has no token, and a head in token mode makes none
        head = c.start_node("head", [
            "--head", "--num-cpus", "1", "--node-ip-address", "127.0.0.1", "--port", str(gcs),
            "--temp-dir", str(data / "ray"), "--include-dashboard", "true", "--dashboard-host", "127.0.0.1",
            "--dashboard-port", str(dash), "--dashboard-agent-listen-port", str(free_port()),
            "--ray-client-server-port", str(free_port()),
        ])  # fmt: skip
        proc.wait_healthy(f"{c.dashboard}/api/gcs_healthz", [head], 180, "the Ray head")
        c.authenticate()
        add_worker(c, "worker")
        c.wait_nodes(2)
        yield c
    finally:
        proc.stop(list(reversed(c.children)))
        proc.sweep(stack_id)
        shutil.rmtree(data, ignore_errors=True)


def add_worker(c: Cluster, name: str) -> proc.Child:
    return c.start_node(name, [
        "--address", c.gcs, "--num-cpus", "2", "--node-ip-address", "127.0.0.1",
        "--dashboard-agent-listen-port", str(free_port()),
    ])  # fmt: skip


@pytest.fixture(scope="module")
def corpus(cluster: Cluster) -> dict[str, Any]:
    """The sample corpus ingested and embedded by one job on the cluster (`ragline refresh`)."""
    sources = write_sample_corpus(cluster.data / "sample")
    # Kept small, for time: the bundled files and eight of Python's reference topics (~60 chunks,
    # one block, so the node-loss test's job has one actor), with an evaluation set of their own.
    small = cluster.data / "reference.jsonl"
    small.write_text("\n".join(sources[1].read_text().splitlines()[:8]) + "\n")
    evalset = cluster.data / "eval"
    (evalset / "qrels").mkdir(parents=True)
    questions = {
        "q1": ("What does the assert statement do when optimization is requested with -O?", "assert"),
        "q2": ("How does an augmented assignment like x += 1 differ from x = x + 1?", "augassign"),
        "q3": ("How are private names mangled inside a class definition?", "atom-identifiers"),
        "q4": ("Which method is called when normal attribute lookup fails?", "attribute-access"),
    }
    (evalset / "queries.jsonl").write_text(
        "".join(json.dumps({"_id": q, "text": text}) + "\n" for q, (text, _) in questions.items())
    )
    qrels = "".join(f"{q}\tpydoc-{topic}\t1\n" for q, (_, topic) in questions.items())
    (evalset / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + qrels)
    paths = f"{sources[0]} {small}"
    began = time.monotonic()
    both = f"ragline refresh {paths} -c sample --json && ragline ingest {small} -c tough --json"
    job_id = cluster.submit("sh", "-c", both, env={"RAGLINE_EMBED_ACTORS": "1"})
    info = cluster.wait_job(job_id)
    logs = cluster.job_logs(job_id)
    assert info["status"] == "SUCCEEDED", logs[-4000:]
    results = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
    print(f"cluster: refresh + ingest job in {time.monotonic() - began:.0f} s")
    return {"refresh": results[0], "ingest": results[1], "sources": sources, "job": info}


@pytest.mark.timeout(900)
def test_a_job_embeds_on_the_worker_into_s3_and_serve_deploy_answers(
    cluster: Cluster, corpus: dict[str, Any]
) -> None:
    refresh = corpus["refresh"]
    chunks = refresh["ingest"]["chunks"]
    assert refresh["ingest"]["quarantined"] == 0
    assert refresh["embed"]["embedded"] == chunks > 0
    # One actor of the worker's 2 CPUs (not of the cluster's 3), so it ran there.
    assert refresh["embed"]["pool"] == "1-1 actors of 2 threads, 2 CPU", refresh["embed"]
    worker = cluster.worker_ids()
    actors = cluster.actors(EMBED_ACTOR)
    assert actors and {a["node_id"] for a in actors} <= worker, actors
    # The index lives in the bucket: read from outside the cluster, with settings' storage options.
    store = cluster.store()
    assert store.collections() == ["sample", "tough"]
    assert store.active_index("sample").count_rows() == chunks

    # Serving, the standard way: `serve deploy` of the local config.
    config = yaml.safe_load((PROJECT_DIR / "deployments" / "serve-local.yaml").read_text())
    port = free_port()
    config["http_options"]["port"] = port
    config["applications"][0]["args"]["generator"] = "none"  # generation is tested elsewhere
    path = cluster.data / "serve-local.yaml"
    path.write_text(yaml.safe_dump(config))
    began = time.monotonic()
    r = cluster.cli("serve", "deploy", str(path), "--address", cluster.dashboard)
    assert r.returncode == 0, r.stdout + r.stderr
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while not proc.healthy(f"{url}/readyz"):
        assert time.monotonic() < deadline, cluster.cli(
            "serve", "status", "--address", cluster.dashboard
        ).stdout
        time.sleep(2)
    print(f"cluster: serve deploy ready in {time.monotonic() - began:.0f} s")
    question = {"query": "What does the assert statement do?", "top_k": 3}
    hit = httpx.post(f"{url}/v1/search", json=question, timeout=60)
    assert hit.status_code == 200, hit.text
    results = hit.json()["results"]
    assert results and results[0]["doc_id"] == "pydoc-assert", results
    r = cluster.cli("serve", "shutdown", "-y", "--address", cluster.dashboard)
    assert r.returncode == 0, r.stdout + r.stderr

    # The same config in the foreground, the other standard way: `serve run`, until Ctrl-C.
    began = time.monotonic()
    log = cluster.data / "logs" / "serve-run.log"
    cmd = [str(BIN / "serve"), "run", str(path), "--address", cluster.gcs]
    run = proc.spawn("serve-run", cmd, cluster.env, log)
    deadline = time.monotonic() + 300
    while not proc.healthy(f"{url}/readyz"):
        assert run.alive() and time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(2)
    print(f"cluster: serve run ready in {time.monotonic() - began:.0f} s")
    again = httpx.post(f"{url}/v1/search", json=question, timeout=60)
    assert again.status_code == 200, again.text
    assert again.json()["results"][0]["doc_id"] == "pydoc-assert", again.text
    run.proc.send_signal(signal.SIGINT)  # Ctrl-C: `serve run` deletes the app and exits
    assert run.proc.wait(timeout=120) == 0, log.read_text()[-3000:]
    assert not proc.healthy(f"{url}/readyz")

    # `ragline evaluate` from outside the cluster scores the same S3 index.
    dataset = str(cluster.data / "eval")
    evaluated = subprocess.run(
        [str(BIN / "ragline"), "evaluate", "-c", "sample", "--dataset", dataset, "--json"],
        env={k: v for k, v in cluster.env.items() if k != proc.STACK_ENV},
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    metrics = json.loads(evaluated.stdout.strip().splitlines()[-1])
    assert metrics["metrics"]["recall@10"] > 0.5, metrics


@pytest.mark.timeout(900)
def test_a_worker_killed_mid_embedding_then_a_rerun_leaves_every_chunk_once(
    cluster: Cluster, corpus: dict[str, Any]
) -> None:
    chunks = corpus["ingest"]["chunks"]
    worker = next(c for c in cluster.children if c.name == "worker")
    job_id = cluster.submit("ragline", "embed", "-c", "tough", "--json")
    # Kill the worker node (raylet, actors and all) once the job's actor is placed on it.
    deadline = time.monotonic() + 300
    workers = cluster.worker_ids()
    while not [a for a in cluster.actors(EMBED_ACTOR) if a["state"] != "DEAD" and a["node_id"] in workers]:
        assert cluster.job(job_id)["status"] in ("PENDING", "RUNNING"), cluster.job_logs(job_id)[-3000:]
        assert time.monotonic() < deadline, cluster.job_logs(job_id)[-3000:]
        time.sleep(0.5)
    proc.kill_session(worker.pid)
    cluster.children.remove(worker)
    # The replacement node, as an autoscaler would start it.
    add_worker(cluster, "worker-2")
    info = cluster.wait_job(job_id)
    print(f"cluster: the embedding job whose node was killed ended {info['status']}: {info.get('message')}")
    assert info["status"] in ("SUCCEEDED", "FAILED"), info
    if info["status"] == "FAILED":
        assert info.get("message"), info  # a reason, not a silent end

    rerun = cluster.submit("ragline", "embed", "-c", "tough", "--json")
    done = cluster.wait_job(rerun)
    logs = cluster.job_logs(rerun)
    assert done["status"] == "SUCCEEDED", logs[-4000:]
    store = cluster.store()
    rows = store.active_index("tough").to_arrow().column("id").to_pylist()
    assert len(rows) == len(set(rows)) == chunks
