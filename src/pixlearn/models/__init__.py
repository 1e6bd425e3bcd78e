"""Models by name. Importing this package registers every built-in model."""

from . import classifiers, fields  # noqa: F401  (registers the classifiers and the coordinate networks)
from .registry import (
    ModelEntry,
    UnknownModelError,
    create_model,
    describe_models,
    get_entry,
    list_models,
    register_model,
)

__all__ = [
    "ModelEntry",
    "UnknownModelError",
    "create_model",
    "describe_models",
    "get_entry",
    "list_models",
    "register_model",
]
