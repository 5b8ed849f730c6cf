"""How ragline is deployed: Serve config files per environment (this folder's YAML files)."""

from pathlib import Path

SERVE_LOCAL = Path(__file__).with_name("serve-local.yaml")
SERVE_GPU = Path(__file__).with_name("serve-gpu.yaml")
