"""The online service: Ray Serve deployments behind a FastAPI ingress (imports `pipelines` only)."""
