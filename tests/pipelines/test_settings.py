from pathlib import Path

import pytest

from pipelines.settings import Settings, validate_collection


def test_env_prefix_and_service_urls(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RAGLINE_TOP_K", "7")
    monkeypatch.setenv("RAY_ADDRESS", "ray://head:10001")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    monkeypatch.setenv("RAGLINE_LANCEDB_URI", "s3://bucket/db")
    s = Settings(data_dir=tmp_path)
    assert s.top_k == 7
    assert s.ray_address == "ray://head:10001"
    assert s.mlflow_uri == "http://mlflow:5000"
    assert s.lancedb_location == "s3://bucket/db"


def test_embedded_defaults_live_under_the_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    s = Settings(data_dir=tmp_path)
    assert s.lancedb_location == str(tmp_path.resolve() / "lancedb")
    assert s.mlflow_uri == f"sqlite:///{tmp_path.resolve() / 'mlflow' / 'mlflow.db'}"
    assert s.prefect_home == tmp_path.resolve() / "prefect"
    long = Settings(data_dir=tmp_path / ("x" * 80))
    assert len(str(long.ray_temp_dir)) <= 60  # Ray's socket paths must stay short


def test_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "ragline.yaml"
    cfg.write_text("top_k: 3\nretrieval_mode: text\n")
    monkeypatch.setenv("RAGLINE_CONFIG_FILE", str(cfg))
    s = Settings()
    assert (s.top_k, s.retrieval_mode) == (3, "text")
    monkeypatch.setenv("RAGLINE_TOP_K", "9")
    assert Settings().top_k == 9  # the environment beats the file


def test_bad_values_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="chunk_overlap"):
        Settings(chunk_tokens=50, chunk_overlap=60)
    with pytest.raises(ValueError, match="invalid collection"):
        validate_collection("Bad Name")
    with pytest.raises(ValueError):
        validate_collection("a__b")
