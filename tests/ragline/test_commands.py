"""The commands a new user runs first, as real subprocesses on a data dir of their own, in the order
of the README: `ragline demo`, then `ragline serve --config` and `ragline chat` against it,
`ragline eval-set`, and a `ragline refresh` that keeps the champion's chunking variant current.
Each command must leave no process behind."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import tempfile
import termios
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
import yaml

from pipelines.index import embed_collection
from pipelines.optimization.variants import Chunking, chunk_variant, variant_name, write_variant_chunks
from pipelines.settings import Settings
from pipelines.store import Store
from tests.conftest import free_port

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
COLLECTION = "sample"


@pytest.fixture(scope="module")
def data_dir() -> Iterator[Path]:
    import shutil

    path = Path(tempfile.mkdtemp(prefix="rl-cmd-"))  # short: Ray's socket paths live below it
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _env(data_dir: Path) -> dict[str, str]:
    """A user's environment: none of the test session's Prefect, MLflow, Ray or ragline settings
    (nor the HAProxy ports its own Serve took: a second Serve could not bind them)."""
    own = ("RAGLINE_", "PREFECT_", "MLFLOW_", "RAY_SERVE_HAPROXY_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(own)}
    env.pop("RAY_ADDRESS", None)
    # The session's model cache stands for `ragline prepare`, which `make demo` runs first.
    cache = {"RAGLINE_MODEL_CACHE_DIR": os.environ["RAGLINE_MODEL_CACHE_DIR"]}
    return {**env, **cache, "RAGLINE_DATA_DIR": str(data_dir), "RAGLINE_RAY_NUM_CPUS": "2"}


def _ragline(data_dir: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(
        [sys.executable, "-m", "ragline", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=_env(data_dir),
        cwd=ROOT,
    )
    assert r.returncode == 0, f"ragline {' '.join(args)}: {r.stderr[-3000:]}"
    return r


def _left_behind(data_dir: Path) -> list[str]:
    """Processes still running that belong to this data dir (Ray's, Prefect's, MLflow's ...)."""
    marks = (str(data_dir), str(Settings(data_dir=data_dir).ray_temp_dir))
    found = []
    for p in psutil.process_iter(["pid", "cmdline", "environ"]):
        try:
            cmdline = " ".join(p.info["cmdline"] or [])
            env = p.info["environ"] or {}
        except (psutil.Error, TypeError):
            continue
        if p.pid != os.getpid() and (
            any(m in cmdline for m in marks) or env.get("RAGLINE_DATA_DIR") == str(data_dir)
        ):
            found.append(f"{p.pid} {cmdline[:160]}")
    return found


def _assert_nothing_left(data_dir: Path, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while (left := _left_behind(data_dir)) and time.monotonic() < deadline:
        time.sleep(1)
    assert not left, left


# What other programs print (Prefect's and Ray's loggers, Ray's C++ core, Serve's controller,
# Great Expectations): none of it may reach the terminal in a normal run.
FOREIGN = (" | INFO ", " | WARNING ", "INFO ", "WARNING", "ERROR", "core_worker", "(raylet)",
           "Controller", "Traceback", "great_expectations", "Starting temporary server")  # fmt: skip


_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def screen(raw: bytes) -> str:
    """What a terminal shows of RAW output: escape codes out, a line redrawn in place (a spinner)
    as its last drawing."""
    text = _ESCAPE.sub("", raw.decode("utf-8", "replace")).replace("\r\n", "\n")
    return "\n".join(line.rsplit("\r", 1)[-1] for line in text.split("\n"))


@pytest.fixture(scope="module")
def demo_run(data_dir: Path) -> subprocess.CompletedProcess[str]:
    """`ragline demo --serve` as a person runs it, on a terminal (a pseudo-terminal, 160 columns:
    spinners and colours on, as a person sees them; some libraries' output reached only a terminal):
    the chat page answers until Ctrl-C, which ends the demo cleanly (exit 0). Its stdout is the
    screen, stdout and stderr together."""
    master, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 160, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "-m", "ragline", "demo", "--serve"],
        env={**_env(data_dir), "TERM": "xterm-256color"}, cwd=ROOT,
        stdin=terminal, stdout=terminal, stderr=terminal,
    )  # fmt: skip
    os.close(terminal)
    raw, deadline, interrupted = b"", time.monotonic() + 900, False
    while time.monotonic() < deadline:
        if select.select([master], [], [], 1)[0]:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the demo and everything it started closed the terminal
                break
            if not chunk:
                break
            raw += chunk
        if not interrupted and (page := re.search(r"Chat page: (\S+)", screen(raw))):
            got = httpx.get(page.group(1), timeout=30)
            assert got.status_code == 200 and "<html" in got.text.lower(), got.text[:300]
            proc.send_signal(signal.SIGINT)  # Ctrl-C
            interrupted = True
    os.close(master)
    proc.wait(timeout=300)
    assert proc.returncode == 0, screen(raw)
    return subprocess.CompletedProcess(proc.args, 0, screen(raw), "")


@pytest.fixture(scope="module")
def demo(demo_run: subprocess.CompletedProcess[str]) -> str:
    return demo_run.stdout


def test_demo_runs_the_main_job_and_answers_with_sources(
    demo_run: subprocess.CompletedProcess[str], data_dir: Path
) -> None:
    demo = demo_run.stdout
    for stage in ("[1/5] sample corpus", "[2/5] ingest", "[3/5] embed", "[4/5] evaluate", "[5/5] serving at"):
        assert f"✓ {stage}" in demo, demo  # the stage's result line, not only its spinner
    assert "Question: What is the with statement used for in Python?" in demo
    answer = demo.split("Answer", 1)[1].split("Sources", 1)
    assert answer[0].strip(), demo  # an answer was printed ...
    assert "[1] Python reference" in answer[1], demo  # ... with its numbered sources
    assert "nDCG@10" in demo and "MLflow run" in demo
    # Quiet: only ragline's own lines on the terminal; the libraries' logs are in the data dir.
    foreign = [line for line in (demo + demo_run.stderr).splitlines() if any(m in line for m in FOREIGN)]
    assert not foreign, foreign
    log = data_dir / "logs" / "demo.log"
    assert f"the logs of Prefect, Ray and MLflow: {log}" in demo
    assert "Finished in state Completed" in log.read_text(errors="replace")  # Prefect's own lines
    # The ending says where the runs are and what to do next.
    assert "Prefect flow runs: ingest " in demo and "ragline up" in demo
    assert "stage times: corpus" in demo
    _assert_nothing_left(data_dir)


def _serve(data_dir: Path, config: Path) -> tuple[subprocess.Popen[str], str]:
    """`ragline serve --config CONFIG`, once /readyz answers."""
    port = yaml.safe_load(config.read_text())["http_options"]["port"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "ragline", "serve", "--config", str(config)],
        env=_env(data_dir),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(1)
    proc.kill()
    raise AssertionError(f"ragline serve never got ready: {proc.communicate()[0][-3000:]}")


@pytest.mark.usefixtures("demo")
def test_serve_with_a_config_file_then_chat_against_it(data_dir: Path, tmp_path: Path) -> None:
    config = yaml.safe_load((ROOT / "deployments" / "serve-local.yaml").read_text())
    config["http_options"]["port"] = free_port()  # the shipped config; only the port is changed
    config["applications"][0]["args"]["top_k"] = 3
    path = tmp_path / "serve-local.yaml"
    path.write_text(yaml.safe_dump(config))
    proc, url = _serve(data_dir, path)
    try:
        ready = httpx.get(f"{url}/readyz", timeout=60).json()
        assert ready["collection"] == COLLECTION and ready["generator"]["backend"] == "local"

        question = "What does the with statement do?"
        chat = _ragline(data_dir, "chat", question, "-c", COLLECTION, "--url", url, "--json")
        body = json.loads(chat.stdout.splitlines()[-1])
        assert body["answer"].strip() and body["degraded"] is False
        assert len(body["sources"]) == 3  # top_k from the config file's args
        assert any("with" in s["title"].lower() for s in body["sources"]), body["sources"]
        shown = _ragline(data_dir, "chat", question, "--url", url).stdout  # the default collection
        assert "Answer" in shown and "Sources" in shown and "[1] " in shown
        # A second serve on the same port is refused at once, in one line (Serve's HAProxy failed
        # to bind it ~10 s later with a traceback), and the first one goes on serving.
        second = subprocess.run(
            [sys.executable, "-m", "ragline", "serve", "--config", str(path)],
            capture_output=True,
            text=True,
            timeout=300,
            env=_env(data_dir),
            cwd=ROOT,
        )
        assert second.returncode == 1 and f"port {config['http_options']['port']} is in use" in second.stderr
        assert httpx.get(f"{url}/readyz", timeout=60).status_code == 200  # the first one still serves
    finally:
        proc.send_signal(signal.SIGINT)  # what Ctrl-C does
        output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, output[-3000:]
    assert "stopping" in output
    _assert_nothing_left(data_dir)


@pytest.mark.usefixtures("demo")
def test_eval_set_writes_a_starter_set_of_the_collection(data_dir: Path) -> None:
    dest = data_dir / "starter"
    out = _ragline(data_dir, "eval-set", str(dest), "-c", COLLECTION, "--n", "12").stdout
    assert "wrote" in out
    queries = [json.loads(line) for line in (dest / "queries.jsonl").read_text().splitlines()]
    assert 8 <= len(queries) <= 12 and all(q["metadata"]["synthetic"] for q in queries)
    qrels = [line.split("\t") for line in (dest / "qrels" / "test.tsv").read_text().splitlines()[1:]]
    assert {q for q, _, _ in qrels} == {q["_id"] for q in queries}
    documents = set(
        Store(Settings(data_dir=data_dir).lancedb_location)
        .documents(COLLECTION)
        .to_arrow()
        .column("id")
        .to_pylist()
    )
    assert {d for _, d, _ in qrels} <= documents  # every relevant document is in the collection


@pytest.mark.usefixtures("demo", "ray_session")
def test_refresh_keeps_the_champions_chunking_variant_current(data_dir: Path) -> None:
    # What an optimize run that picked smaller chunks leaves: the variant, indexed, as the champion.
    store = Store(Settings(data_dir=data_dir).lancedb_location)
    chunking = Chunking(96, 16)
    variant = variant_name(COLLECTION, chunking)
    write_variant_chunks(store, COLLECTION, variant, chunk_variant(store, COLLECTION, chunking, None))
    before = embed_collection(store, variant)
    store.set_champion(
        COLLECTION,
        {"name": COLLECTION, "version": "1", "chunking": {"tokens": 96, "overlap": 16},
         "retrieval": {"mode": "hybrid"}, "index_table": store.active_index(variant).name},
    )  # fmt: skip
    corpus = data_dir / "sample-corpus"
    new_doc = corpus / "docs" / "kelp-forests.md"
    new_doc.write_text(
        "# Kelp forests\n\nGiant kelp grows up to half a metre a day in cold, nutrient-rich water. "
        "Sea otters keep the forests alive by eating the urchins that graze on the kelp."
    )
    done = _ragline(
        data_dir, "refresh", str(corpus / "docs"), str(corpus / "python-reference.jsonl"),
        "-c", COLLECTION, "--json",
    )  # fmt: skip
    # Quiet like every command: stdout is the one JSON object, stderr names the log, nothing foreign.
    assert len(done.stdout.splitlines()) == 1, done.stdout
    result = json.loads(done.stdout)
    foreign = [line for line in (done.stdout + done.stderr).splitlines() if any(m in line for m in FOREIGN)]
    assert not foreign, foreign
    assert f"the logs of Prefect, Ray and MLflow: {data_dir / 'logs' / 'refresh.log'}" in done.stderr
    assert result["ingest"]["documents"] == 1  # only the new document was new
    assert result["champion_variant"] == variant
    assert store.champion(COLLECTION)["version"] == "1"  # refresh keeps the champion ...
    docs = store.documents(COLLECTION).to_arrow().to_pylist()
    new_id = next(d["id"] for d in docs if d["source_uri"].endswith("kelp-forests.md"))
    variant_chunks = store.chunks(variant).to_arrow()
    assert new_id in variant_chunks.column("doc_id").to_pylist()  # the variant has the new document
    assert set(variant_chunks.column("doc_id").to_pylist()) == {d["id"] for d in docs}
    index = store.active_index(variant)
    assert index.name == before.table  # ... and its index table, now with the new chunks
    assert set(index.to_arrow().column("id").to_pylist()) == set(variant_chunks.column("id").to_pylist())
    hits = index.search("sea otters urchins kelp", query_type="fts").limit(3).to_list()
    assert hits and hits[0]["doc_id"] == new_id  # and finds it by full text right after
    _assert_nothing_left(data_dir)


@pytest.mark.usefixtures("demo")
def test_demo_verbose_shows_the_libraries_logs(data_dir: Path) -> None:
    """`--verbose`: the same stages, with Prefect's (and the others') lines on the terminal again.
    A second run on the same data dir: nothing is new to ingest or embed."""
    r = _ragline(data_dir, "demo", "--verbose")
    terminal = r.stdout + r.stderr
    for stage in ("[2/5] ingest", "0 new/changed", "[3/5] embed: 0 embedded", "[5/5] serving at"):
        assert stage in terminal, terminal
    assert " | INFO    | Flow run " in terminal and "Finished in state Completed" in terminal
    assert "the logs of Prefect, Ray and MLflow" not in terminal  # nothing went to a log
    assert "Sources" in r.stdout and "[1] " in r.stdout
    _assert_nothing_left(data_dir)
