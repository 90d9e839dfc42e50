"""The `polymodal` command line. Importing the package registers every command on the one Typer app."""
from . import components, evaluate, generate, predict, retrieval, train  # noqa: F401  (registration, in help order)
from .app import app, main

__all__ = ["app", "main"]
