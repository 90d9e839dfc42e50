"""One registry per component kind (modalities, encoders, fusions, tasks): name -> class with a pydantic `Config`."""
from __future__ import annotations

from typing import Generic, TypeVar

from pydantic import BaseModel, ValidationError

from .errors import RecipeError

T = TypeVar("T")

REGISTRIES: dict[str, "Registry"] = {}  # kind -> registry, filled as the component packages are imported


class Registry(Generic[T]):
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, type[T]] = {}
        REGISTRIES[kind] = self

    def register(self, name: str):
        def deco(cls: type[T]) -> type[T]:
            self._items[name] = cls
            cls.registry_name = name  # type: ignore[attr-defined]
            return cls

        return deco

    def get(self, name: str, field: str = "") -> type[T]:
        if name not in self._items:
            where = f"field `{field}`: " if field else ""
            raise RecipeError(f"{where}unknown {self.kind} '{name}' (choose from: {', '.join(sorted(self._items))})")
        return self._items[name]

    def names(self) -> list[str]:
        return sorted(self._items)

    def items(self) -> list[tuple[str, type[T]]]:
        return sorted(self._items.items())

    def __contains__(self, name: str) -> bool:
        return name in self._items


def validate_config(config_cls: type[BaseModel], values: dict, field: str) -> BaseModel:
    """Validate a component's config dict, turning pydantic errors into one message naming the recipe field."""
    try:
        return config_cls.model_validate(values)
    except ValidationError as e:
        raise RecipeError(format_validation_error(e, prefix=field)) from None


def format_validation_error(e: ValidationError, prefix: str = "") -> str:
    lines = []
    for err in e.errors():
        loc = ".".join(str(p) for p in err["loc"])
        path = ".".join(p for p in (prefix, loc) if p)
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        lines.append(f"field `{path}`: {msg}")
    return "invalid recipe: " + "; ".join(lines)
