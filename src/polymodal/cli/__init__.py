"""The `polymodal` command line. Importing the package registers every command on the one Typer app."""
from . import components, data, deploy, evaluate, generate, predict, retrieval, train  # noqa: F401  (registration)
from .app import app, main

__all__ = ["app", "main"]
