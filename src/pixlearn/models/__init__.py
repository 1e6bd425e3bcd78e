"""Models by name. Importing this package registers every built-in model."""

from pixlearn.models import (  # noqa: F401  (registers the classifiers and the coordinate networks)
    classifiers,
    efficientnet,
    fields,
    gaussians,
    latent_grids,
)
from pixlearn.models.loading import load_model
from pixlearn.models.registry import (
    InputTooSmallError,
    ModelEntry,
    UnknownModelError,
    create_model,
    describe_models,
    get_entry,
    list_models,
    register_model,
)

__all__ = [
    "InputTooSmallError",
    "ModelEntry",
    "UnknownModelError",
    "create_model",
    "describe_models",
    "get_entry",
    "load_model",
    "list_models",
    "register_model",
]
