"""Serving: an HTTP API (FastAPI + uvicorn) with micro-batching, Prometheus metrics and a web page."""
from .app import ServedModel, ServeSettings, create_app, unique_names
from .values import PathPolicy, Rejected

__all__ = ["PathPolicy", "Rejected", "ServeSettings", "ServedModel", "create_app", "unique_names"]
