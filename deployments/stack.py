"""`ragline up`: the whole local stack on loopback, supervised until Ctrl-C or SIGTERM.

Children (each in its own session, output in `<data dir>/stack/logs/`): a Prefect server on the
data dir's PREFECT_HOME (whose database holds the commands' earlier flow runs), a `process` worker
with every deployment of prefect.yaml registered, the MLflow UI on the store the flows write, a
Ray head with its dashboard, and the Serve app on that Ray. The worker's flow runs use the same Ray
(RAY_ADDRESS) and data dir. While it runs, the commands send their flow runs to its server.
`<data dir>/stack/state.json` says what runs, for `ragline status`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from deployments import processes as proc
from deployments.state import Component, State, create_time, process_alive, state_path
from deployments.vllm_cpu import vllm_python
from pipelines.runtime import SERVE_ENV, free_port, haproxy_ports, loopback_haproxy, port_free
from pipelines.settings import Settings

POOL = "ragline-local"
# Serve's replicas hold ~2.6 logical CPUs at most but are idle most of the time; the Ray head
# advertises that many CPUs on top of the machine's, so a flow's embedding actors still get placed.
SERVE_CPUS = 3
PROJECT_DIR = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class StackConfig:
    prefect_port: int = 4200
    mlflow_port: int = 5000
    serve_port: int = 8000
    dashboard_port: int = 8265
    host: str = "127.0.0.1"
    auth: bool = True
    project_dir: Path = PROJECT_DIR
    ray_cpus: int | None = None  # None: the machine's cores + SERVE_CPUS
    start_timeout_s: float = 300.0

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> StackConfig:
        base = {
            "prefect_port": settings.prefect_port,
            "mlflow_port": settings.mlflow_port,
            "serve_port": settings.port,
            "dashboard_port": settings.ray_dashboard_port,
            "host": settings.host,
        }
        return cls(**{**base, **{k: v for k, v in overrides.items() if v is not None}})


class Stack:
    def __init__(self, settings: Settings, config: StackConfig, say: Callable[[str], None] = print) -> None:
        self.settings = settings
        self.config = config
        self.say = say
        self.home = settings.root / "stack"
        self.logs = self.home / "logs"
        self.id = uuid.uuid4().hex
        self.children: list[proc.Child] = []
        h = config.host
        self.urls = {
            "prefect": f"http://{h}:{config.prefect_port}",
            "mlflow": f"http://{h}:{config.mlflow_port}",
            "ray": f"http://{h}:{config.dashboard_port}",
            "serve": f"http://{h}:{config.serve_port}",
        }
        self.worker_port = free_port(h)
        self.state = State(
            stack_id=self.id,
            pid=os.getpid(),
            started=create_time(os.getpid()) or 0.0,
            started_at=datetime.now(UTC).isoformat(),
            data_dir=str(settings.root),
            phase="starting",
        )
        self.deployments: list[str] = []
        self.ray_address = ""

    # --- environment -----------------------------------------------------------------------------
    def _env(self, **extra: str) -> dict[str, str]:
        env = {
            **os.environ,
            proc.STACK_ENV: self.id,
            "RAGLINE_DATA_DIR": str(self.settings.root),
            "RAGLINE_PROJECT_DIR": str(self.config.project_dir),
            # The home of the commands' temporary server too: its database holds their history.
            "PREFECT_HOME": str(self.settings.prefect_home),
            "PREFECT_API_URL": f"{self.urls['prefect']}/api",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DO_NOT_TRACK": "1",
            "RAY_USAGE_STATS_ENABLED": "0",
            "MLFLOW_TRACKING_URI": self.settings.mlflow_uri,
            "RAGLINE_MLFLOW_UI_URL": self.urls["mlflow"],
            "PYTHONUNBUFFERED": "1",
        }
        # Ray's head turns token auth on by default (token in ~/.ray/auth_token) but a driver
        # connecting by address does not: both sides need the mode set.
        env.setdefault("RAY_AUTH_MODE", "token")
        for key, value in SERVE_ENV.items():  # read by the Ray head, so by every replica it starts
            env.setdefault(key, value)
        env.update(extra)
        return env

    def _spawn(self, name: str, cmd: list[str], env: dict[str, str], **kw: Any) -> proc.Child:
        child = proc.spawn(name, cmd, env, self.logs / f"{name}.log", **kw)
        self.children.append(child)
        return child

    def _record(self, name: str, url: str, health: str, child: proc.Child) -> None:
        started = create_time(child.pid)
        self.state.components.append(Component(name, url, health, child.pid, started, str(child.log)))
        self.state.write(state_path(self.settings))

    # --- start -----------------------------------------------------------------------------------
    def _preflight(self) -> None:
        old = State.read(state_path(self.settings))
        if old is not None:
            if process_alive(old.pid, old.started):
                raise proc.StartError(f"`ragline up` already runs for {old.data_dir} (pid {old.pid})")
            left = proc.sweep(old.stack_id)
            if left:
                self.say(f"stopped {len(left)} processes left by an earlier `ragline up` that was killed")
        ports = {
            "Prefect": self.config.prefect_port,
            "MLflow": self.config.mlflow_port,
            "Serve": self.config.serve_port,
            "Ray dashboard": self.config.dashboard_port,
        }
        for what, port in ports.items():
            if not port_free(self.config.host, port):
                raise proc.StartError(f"port {port} ({what}) is in use on {self.config.host}")
        if not (self.config.project_dir / "prefect.yaml").is_file():
            raise proc.StartError(f"no prefect.yaml in the project dir {self.config.project_dir}")
        if self.settings.generator == "vllm-cpu" and not self.settings.openai_base_url:
            vllm_python()  # its serve starts vLLM's CPU server: say now when it is not installed

    def start(self) -> None:
        self._preflight()
        self.logs.mkdir(parents=True, exist_ok=True)
        self.state.write(state_path(self.settings))
        timeout = self.config.start_timeout_s
        prefect = self._start_prefect()
        mlflow = self._start_mlflow()
        ray_head = self._start_ray()

        proc.wait_healthy(f"{self.urls['prefect']}/api/health", [prefect], timeout, "the Prefect server")
        self.say(f"prefect server  {self.urls['prefect']}")
        worker = self._start_worker()
        register = self._start_register(worker)

        proc.wait_healthy(f"{self.urls['ray']}/api/gcs_healthz", [ray_head], timeout, "Ray")
        self.say(f"ray             {self.urls['ray']}  (GCS {self.ray_address})")
        serve = self._start_serve()

        proc.wait_healthy(f"{self.urls['mlflow']}/health", [mlflow], timeout, "the MLflow server")
        self.say(f"mlflow          {self.urls['mlflow']}")
        self._finish_register(register)
        worker_health = f"http://{self.config.host}:{self.worker_port}/health"
        proc.wait_healthy(worker_health, [worker], timeout, "the Prefect worker")
        self.say(f"prefect worker  pool {POOL}, deployments: {', '.join(self.deployments)}")
        proc.wait_healthy(f"{self.urls['serve']}/healthz", [serve, ray_head], timeout, "the Serve app")
        self.say(f"serve           {self.urls['serve']}")
        self.state.phase = "running"
        self.state.write(state_path(self.settings))

    def _start_prefect(self) -> proc.Child:
        env = self._env()
        env.pop("PREFECT_API_URL")  # the server is the API
        # The UI finds its API from settings, not from --port: on any port but 4200 it said
        # "Can't connect to Server API at http://127.0.0.1:4200/api".
        env["PREFECT_SERVER_UI_API_URL"] = f"{self.urls['prefect']}/api"
        cmd = [_bin("prefect"), "server", "start", "--host", self.config.host]
        cmd += ["--port", str(self.config.prefect_port), "--analytics-off"]
        child = self._spawn("prefect", cmd, env)
        self._record("prefect", self.urls["prefect"], f"{self.urls['prefect']}/api/health", child)
        return child

    def _start_mlflow(self) -> proc.Child:
        artifacts = self.settings.mlflow_artifacts
        artifacts.mkdir(parents=True, exist_ok=True)
        cmd = [_bin("mlflow"), "server", "--host", self.config.host, "--port", str(self.config.mlflow_port)]
        cmd += ["--backend-store-uri", self.settings.mlflow_uri]
        cmd += ["--default-artifact-root", artifacts.as_uri(), "--workers", "1"]
        child = self._spawn("mlflow", cmd, self._env())
        self._record("mlflow", self.urls["mlflow"], f"{self.urls['mlflow']}/health", child)
        return child

    def _start_ray(self) -> proc.Child:
        from ray.util import get_node_ip_address

        temp = self.settings.ray_temp_dir
        temp.mkdir(parents=True, exist_ok=True)
        gcs_port = free_port()
        cpus = self.config.ray_cpus or (self.settings.ray_num_cpus or os.cpu_count() or 1) + SERVE_CPUS
        # Every port Ray would otherwise take from a fixed default is picked free: other Ray
        # clusters may run on this machine. Ray binds its internal ports to the node's IP.
        cmd = [_bin("ray"), "start", "--head", "--block", "--disable-usage-stats"]
        cmd += ["--port", str(gcs_port), "--num-cpus", str(cpus), "--temp-dir", str(temp)]
        cmd += ["--include-dashboard", "true", "--dashboard-host", self.config.host]
        cmd += ["--dashboard-port", str(self.config.dashboard_port)]
        cmd += ["--dashboard-agent-listen-port", str(free_port())]
        cmd += ["--ray-client-server-port", str(free_port())]
        self.ray_address = f"{get_node_ip_address()}:{gcs_port}"
        # Serve is stopped before Ray, so Ray's drain-on-SIGTERM (30 s by default) has nothing to do.
        # Ports of its own for HAProxy's listeners: not the ones a Ray started by this process's
        # parent (a test session, a demo) took; bound to loopback like everything else here.
        on_host = self.settings.model_copy(update={"host": self.config.host})
        listeners = {**haproxy_ports(), **loopback_haproxy(on_host)}
        env = self._env(RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S="0", **listeners)
        ensure_ray_token(env)
        child = self._spawn("ray", cmd, env, grace_s=30)
        self._record("ray", self.urls["ray"], f"{self.urls['ray']}/api/gcs_healthz", child)
        return child

    def _start_worker(self) -> proc.Child:
        env = self._env(
            PREFECT_WORKER_WEBSERVER_HOST=self.config.host,
            PREFECT_WORKER_WEBSERVER_PORT=str(self.worker_port),
            RAY_ADDRESS=self.ray_address,
        )
        cmd = [_bin("prefect"), "worker", "start", "--pool", POOL, "--type", "process"]
        cmd += ["--with-healthcheck", "--name", f"ragline-up-{self.id[:8]}"]
        # A worker ignores SIGTERM (FACTS.md); SIGINT stops it.
        child = self._spawn("worker", cmd, env, cwd=self.config.project_dir, stop_signal=signal.SIGINT)
        url = f"{self.urls['prefect']}/work-pools/work-pool/{POOL}"
        self._record("worker", url, f"http://{self.config.host}:{self.worker_port}/health", child)
        return child

    def _start_register(self, worker: proc.Child) -> proc.Child:
        """`prefect deploy` of every deployment of prefect.yaml whose flow file exists, once the
        worker has created the pool (a `process` pool with Prefect's own job template)."""
        pool_url = f"{self.urls['prefect']}/api/work_pools/{POOL}"
        proc.wait_healthy(pool_url, [worker], self.config.start_timeout_s, f"the work pool {POOL}")
        spec = yaml.safe_load((self.config.project_dir / "prefect.yaml").read_text())
        names: list[str] = []
        for d in spec.get("deployments") or []:
            path = self.config.project_dir / d["entrypoint"].split(":")[0]
            if path.is_file():
                names.append(d["name"])
            else:
                self.say(f"[skipped] deployment {d['name']}: {path.name} does not exist yet")
        self.deployments = names
        cmd = [_bin("prefect"), "--no-prompt", "deploy", "--prefect-file", "prefect.yaml"]
        for n in names:
            cmd += ["--name", n]
        return self._spawn("deploy", cmd, self._env(), cwd=self.config.project_dir)

    def _finish_register(self, register: proc.Child) -> None:
        try:
            rc = register.proc.wait(timeout=self.config.start_timeout_s)
        except subprocess.TimeoutExpired:
            rc = None  # left in self.children, so stop() ends it
        if rc != 0:
            raise proc.StartError(
                f"registering the deployments of prefect.yaml failed: {register.last_line()} "
                f"(log: {register.log})"
            )
        self.children.remove(register)

    def _start_serve(self) -> proc.Child:
        env = self._env(
            RAY_ADDRESS=self.ray_address,
            RAGLINE_HOST=self.config.host,
            RAGLINE_PORT=str(self.config.serve_port),
            RAGLINE_AUTH="true" if self.config.auth else "false",
        )
        cmd = [sys.executable, "-m", "ragline", "serve"]
        child = self._spawn("serve", cmd, env, stop_signal=signal.SIGINT, grace_s=40)
        self._record("serve", self.urls["serve"], f"{self.urls['serve']}/healthz", child)
        return child

    # --- run and stop ----------------------------------------------------------------------------
    def watch(self, poll_s: float = 1.0) -> str:
        """Block until a child exits; returns why (a signal interrupts this with an exception)."""
        while True:
            for child in self.children:
                if not child.alive():
                    return (
                        f"{child.name} exited with status {child.proc.returncode}: {child.last_line()} "
                        f"(log: {child.log})"
                    )
            time.sleep(poll_s)

    def stop(self) -> list[int]:
        """Stop Serve, the worker and MLflow first, then Ray and the Prefect server; then kill
        anything of this stack still alive. Returns the pids that had to be swept."""
        self.state.phase = "stopping"
        path = state_path(self.settings)
        written = State.read(path)
        mine = written is not None and written.stack_id == self.id  # not another `ragline up`'s
        if mine:
            self.state.write(path)
        first = [c for c in self.children if c.name not in ("ray", "prefect")]
        proc.stop(first)
        proc.stop([c for c in self.children if c.name in ("ray", "prefect")])
        swept = proc.sweep(self.id)
        if mine:
            path.unlink(missing_ok=True)
        return swept


def ensure_ray_token(env: dict[str, str]) -> None:
    """`ray start --head` in token mode refuses to start without a token and, unlike `ray.init()`,
    never makes one: on a machine that has none yet, make it (~/.ray/auth_token), as `ray
    get-auth-token --generate` does."""
    if env.get("RAY_AUTH_MODE", "").lower() != "token" or env.get("RAY_AUTH_TOKEN"):
        return
    token = Path(env.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token").expanduser()
    if not token.is_file():
        subprocess.run(
            [_bin("ray"), "get-auth-token", "--generate"],
            env=env,
            capture_output=True,
            check=True,
            timeout=120,
        )


def _bin(name: str) -> str:
    """A console script of this virtual environment (next to the interpreter), else from PATH."""
    here = Path(sys.executable).parent / name
    return str(here) if here.exists() else name


class Interrupted(Exception):
    """SIGINT or SIGTERM arrived; raised from the signal handler to unwind whatever runs."""


def run(
    settings: Settings,
    config: StackConfig,
    say: Callable[[str], None],
    on_ready: Callable[[Stack], None],
) -> str | None:
    """Start the stack, call ON_READY, block until SIGINT/SIGTERM or until a child dies, then stop
    everything. Returns None after a requested stop, else the one-line reason it ended."""
    stack = Stack(settings, config, say)

    def _interrupt(signum: int, _frame: Any) -> None:
        raise Interrupted(signal.Signals(signum).name)

    previous = {s: signal.signal(s, _interrupt) for s in (signal.SIGINT, signal.SIGTERM)}
    reason: str | None = None
    try:
        stack.start()
        on_ready(stack)
        reason = stack.watch()
    except Interrupted as sig:
        say(f"{sig}: stopping the stack …")
    except proc.StartError as exc:
        reason = str(exc)
    finally:
        # A second Ctrl-C must not cut the shutdown short and orphan Ray or the worker.
        for s in previous:
            signal.signal(s, signal.SIG_IGN)
        began, started_any = time.monotonic(), bool(stack.children)
        swept = stack.stop()
        if started_any:
            say(f"stopped in {time.monotonic() - began:.1f} s" + (f" ({len(swept)} killed)" if swept else ""))
        for s, handler in previous.items():
            signal.signal(s, handler)
    return reason
