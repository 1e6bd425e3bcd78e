"""The model spec: the one typed record of model.json, written by training and fitting and read by
evaluation, prediction, rendering and the report.

It says which registered network to build (`model`, `kwargs`) and how to feed it: for a classifier,
the classes, input size, colour mode, fit, head, TTA and precision its training used; for an image
fit, the coordinate convention and the image it was fitted to. A new field is one line with its
default here (and one check in `_check` where its values are limited); files written before it
existed then load with the default.

    >>> spec = ModelSpec("seed-cnn", "classify", {"in_channels": 1, "num_classes": 2, "input_size": [150, 150]},
    ...                  classes=("city", "nature"), input_size=(150, 150), color="grayscale")
    >>> ModelSpec.from_dict(spec.to_dict()) == spec
    True
    >>> ModelSpec.from_dict({**spec.to_dict(), "format": "pixlearn-model/9"})
    Traceback (most recent call last):
    ...
    pixlearn.core.errors.RunError: model.json: written by a newer pixlearn (spec version 9; ...)...
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pixlearn.core.errors import RunError

SPEC_NAME = "pixlearn-model"
SPEC_VERSION = 1  # raise when a change makes older pixlearn misread new files; readers accept 1..SPEC_VERSION
CHANNELS = {"grayscale": 1, "rgb": 3}
MAX_TTA_SHIFT = 8  # pixels; above it the shifted views move the content more than the training shifts do

# What a spec may describe: checked by ModelSpec.check (and so on every load) before any network is
# built, and by training and fitting before they start, so every run they write loads again. A
# tampered model.json past one of them is refused instead of allocating or computing without end.
MAX_INPUT_SIDE = 2048  # classifier input height and width: 12 predictions at 4000x4000 took minutes
MAX_CLASSES = 1000  # classifier outputs (the confusion matrix and report tables grow as its square)
MAX_FIELD_PIXELS = 1 << 28  # fitted image width x height (268,435,456 = 16384x16384)
MAX_FIELD_SIDE = 1 << 16  # fitted image width or height
MAX_FIELD_CHANNELS = 4  # RGBA
MAX_WEIGHT_BYTES = 2 << 30  # model.safetensors as a whole (header included); loading reads it all
MAX_WEIGHT_HEADER_BYTES = 16 << 20  # its JSON header, read before anything else
MAX_SPEC_BYTES = 4 << 20  # model.json (1,000 long class names take a quarter of a MiB)
# The numbers every image's probabilities go through, each refused outside its range (NaN and infinity
# included) by `number_problem`, naming the key: past these a tampered or hand-edited spec turns every
# probability into NaN, 0 or 1. Each range holds what pixlearn fits or sets with room to spare (the
# temperature search spans 0.05-20, calibration.MIN_TEMPERATURE / MAX_TEMPERATURE; inputs are in [0, 1]).
TEMPERATURE_RANGE = ("a positive number", 1e-3, 1e3)
NORMALIZE_MEAN_RANGE = ("a number", -1e3, 1e3)
NORMALIZE_STD_RANGE = ("a positive number", 1e-3, 1e3)
PROBABILITY_RANGE = ("a probability", 0.0, 1.0)  # a threshold's value, abstain_below


@dataclass(frozen=True)
class FittedImage:
    """The image a field model was fitted to (the seed's `dim(im)` plus where it came from)."""

    width: int
    height: int
    channels: int
    mode: str = ""  # Pillow's mode: L, RGB, RGBA
    source: str = ""  # path, URL, "<array>" or "<bytes>"
    frames: int = 1


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild a saved model and feed it inputs like those it was trained on."""

    model: str  # the registry name
    task: Literal["classify", "field"]
    kwargs: dict[str, Any] = field(default_factory=dict)  # the registered constructor's arguments
    # classifiers: how images are decoded and scored
    classes: tuple[str, ...] = ()
    input_size: tuple[int, int] | None = None  # (height, width) images are resized to
    color: Literal["grayscale", "rgb"] | None = None
    fit: Literal["squash", "crop", "pad"] = "squash"
    head: Literal["softmax", "sigmoid"] = "softmax"
    tta: bool = False  # mirror test-time augmentation in evaluation and prediction
    tta_shift: int = 0  # with tta, also the image moved by this many pixels both ways (batches.forward_logits)
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # inference runs in the precision training ran in
    # (mean, std) applied to every channel after /255, (x - mean) / std, wherever the network is fed
    # (classify.batches.normalise); None: inputs in [0, 1], as every run before the field had
    normalize: tuple[float, float] | None = None
    start_weights: dict[str, str] | None = None  # the weights training started from: {"file", "sha256"}
    # temperature scaling fitted on the validation split (--calibrate): logits / T before the head's
    # output function; one value for softmax, one per class output for sigmoid; None: uncalibrated
    temperature: tuple[float, ...] | None = None
    # a two-class operating point: {"class": name, "value": probability, "rule": how it was chosen};
    # that class is predicted when its probability reaches value; None: the most probable class
    threshold: dict[str, Any] | None = None
    abstain_below: float | None = None  # top probability under which a prediction is marked abstained
    # many labels per image (--multi-label): a sigmoid per label, each label present where its probability
    # reaches its threshold in `label_thresholds` (fitted on the validation split; None: 1/2 each)
    multi_label: bool = False
    label_thresholds: tuple[float, ...] | None = None
    # image fits
    coords: Literal["normalized", "pixel"] = "normalized"
    image: FittedImage | None = None

    @classmethod
    def classifier(
        cls, model: str, classes: Sequence[str], input_size: Sequence[int], color: str, **fields: Any
    ) -> ModelSpec:
        """The spec of a registered classifier: its constructor arguments follow from classes, size and colour.

        >>> ModelSpec.classifier("seed-cnn", ["city", "nature"], (150, 150), "grayscale").kwargs
        {'in_channels': 1, 'num_classes': 2, 'input_size': [150, 150]}
        """
        size = (int(input_size[0]), int(input_size[1]))
        kwargs = {"in_channels": CHANNELS[color], "num_classes": len(classes), "input_size": list(size)}
        return cls(model, "classify", kwargs, classes=tuple(classes), input_size=size, color=color, **fields)

    @classmethod
    def field(cls, model: str, image: FittedImage, coords: str = "normalized", **model_kwargs: Any) -> ModelSpec:
        """The spec of a registered field model fitted to `image`."""
        kwargs = {"in_features": 2, "out_features": image.channels, **model_kwargs}
        return cls(model, "field", kwargs, coords=coords, image=image)  # type: ignore[arg-type]

    @property
    def in_channels(self) -> int:
        return CHANNELS[self.color] if self.color else int(self.kwargs.get("in_channels", 1))

    def input_shape(self) -> tuple[int, ...]:
        """What one input looks like to the network: (C, H, W) for a classifier, (2,) for a field."""
        if self.task == "classify" and self.input_size is not None:
            return (self.in_channels, *self.input_size)
        return (int(self.kwargs.get("in_features", 2)),)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        return {"format": f"{SPEC_NAME}/{SPEC_VERSION}", **data}

    @classmethod
    def from_dict(cls, data: Any, source: str | os.PathLike = "model.json") -> ModelSpec:
        """Read and check a spec written by any version up to this one; RunError says what is wrong."""
        if not isinstance(data, dict):
            raise RunError(f"{source}: not a pixlearn model spec (expected a JSON object)")
        _check_version(data.get("format"), source)
        values = {k: v for k, v in data.items() if k != "format"}
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise RunError(f"{source}: unknown spec field(s) {', '.join(unknown)}")
        if not isinstance(values.get("model"), str) or not isinstance(values.get("kwargs"), dict):
            raise RunError(f"{source}: the spec needs a model name and a kwargs object")
        problem = _type_problem(values)
        if problem:
            raise RunError(f"{source}: {problem}")
        try:
            if isinstance(values.get("classes"), list):
                values["classes"] = tuple(values["classes"])
            if isinstance(values.get("input_size"), list):
                values["input_size"] = tuple(values["input_size"])
            if isinstance(values.get("normalize"), list):
                values["normalize"] = tuple(values["normalize"])
            if isinstance(values.get("label_thresholds"), list):
                values["label_thresholds"] = tuple(float(t) for t in values["label_thresholds"])
            if isinstance(values.get("temperature"), list):
                values["temperature"] = tuple(float(t) for t in values["temperature"])
            if isinstance(values.get("image"), dict):
                values["image"] = FittedImage(**values["image"])
            spec = cls(**values)
        except TypeError as exc:
            raise RunError(f"{source}: malformed spec ({exc})") from exc
        spec.check(source)
        return spec

    def check(self, source: str | os.PathLike = "model.json") -> None:
        """Refuse a spec whose values are out of range or contradict its own network's kwargs."""
        problem = _problem(self)
        if problem:
            raise RunError(f"{source}: {problem}")


def _text(value: Any) -> bool:
    return isinstance(value, str)


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _json_value(value: Any) -> bool:
    """A constructor argument: text, a finite number, true/false/null, or a list of them."""
    if isinstance(value, list | tuple):  # tuples: a spec's own to_dict()
        return all(_json_value(v) for v in value)  # read_json bounds the nesting
    if isinstance(value, float):
        return math.isfinite(value)
    return value is None or isinstance(value, str | int | bool)


def _reals(values: Any) -> bool:
    """Numbers (not true / false), finite or not: `number_problem` checks their values."""
    return all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)


def _threshold(value: Any) -> bool:
    if not isinstance(value, dict) or set(value) != {"class", "value", "rule"}:
        return False
    return _reals([value["value"]]) and _text(value["class"]) and _text(value["rule"])


def _fitted_image(value: Any) -> bool:
    if not isinstance(value, dict) or not set(value) <= {f.name for f in dataclasses.fields(FittedImage)}:
        return False
    counts = all(_count(value.get(k, 1)) for k in ("width", "height", "channels", "frames"))
    texts = all(_text(value.get(k, "")) for k in ("mode", "source"))
    return counts and texts and {"width", "height", "channels"} <= set(value)


# Each field of model.json as read from JSON, checked before the spec is built from it: the type
# annotations are not enforced by the dataclass, and a wrong type would fail far from the file.
_FIELD_TYPES: dict[str, tuple[Any, str]] = {
    "model": (lambda v: _text(v) and v != "", "a registered model name"),
    "task": (_text, "text"),
    "kwargs": (
        lambda v: all(_text(k) and _json_value(x) for k, x in v.items()),
        "an object of text, finite numbers, true / false / null and lists of them",
    ),
    "classes": (lambda v: isinstance(v, list | tuple) and all(_text(c) for c in v), "a list of class names (text)"),
    "input_size": (
        lambda v: v is None or (isinstance(v, list | tuple) and len(v) == 2 and all(_count(x) for x in v)),
        "[height, width], two positive integers",
    ),
    "color": (lambda v: v is None or _text(v), "text or null"),
    "fit": (_text, "text"),
    "head": (_text, "text"),
    "tta": (lambda v: isinstance(v, bool), "true or false"),
    "tta_shift": (
        lambda v: isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= MAX_TTA_SHIFT,
        f"an integer from 0 to {MAX_TTA_SHIFT}",
    ),
    "precision": (_text, "text"),
    "normalize": (
        lambda v: v is None or (isinstance(v, list | tuple) and len(v) == 2 and _reals(v)),
        "null or [mean, std], two numbers",
    ),
    "start_weights": (
        lambda v: v is None or (isinstance(v, dict) and set(v) == {"file", "sha256"} and all(map(_text, v.values()))),
        'null or {"file": text, "sha256": text}',
    ),
    "temperature": (
        lambda v: v is None or (isinstance(v, list | tuple) and len(v) >= 1 and _reals(v)),
        "null or a list of numbers",
    ),
    "threshold": (
        lambda v: v is None or _threshold(v),
        'null or {"class": text, "value": a number, "rule": text}',
    ),
    "abstain_below": (lambda v: v is None or _reals([v]), "null or a number"),
    "multi_label": (lambda v: isinstance(v, bool), "true or false"),
    "label_thresholds": (
        lambda v: v is None or (isinstance(v, list | tuple) and len(v) >= 1 and _reals(v)),
        "null or a list of numbers",
    ),
    "coords": (_text, "text"),
    "image": (
        lambda v: v is None or _fitted_image(v),
        "null or an object of width, height, channels, frames (positive integers), mode and source (text)",
    ),
}


def _type_problem(values: dict[str, Any]) -> str | None:
    """The first field whose value has the wrong type, or None."""
    for name, (ok, expected) in _FIELD_TYPES.items():
        if name in values and not ok(values[name]):
            shown = repr(values[name])
            return f"{name} must be {expected}, got {shown if len(shown) <= 60 else shown[:57] + '...'}"
    return None


def _check_version(text: Any, source: str | os.PathLike) -> None:
    match = re.fullmatch(rf"{SPEC_NAME}/(\d+)", str(text))
    if not match:
        raise RunError(f"{source}: not a pixlearn model spec (expected format {SPEC_NAME}/N, got {text!r})")
    version = int(match.group(1))
    if not 1 <= version <= SPEC_VERSION:
        raise RunError(
            f"{source}: written by a newer pixlearn (spec version {version}; this version reads up to "
            f"{SPEC_VERSION}); upgrade pixlearn to load it"
        )


_CHOICES = {
    "task": ("classify", "field"),
    "fit": ("squash", "crop", "pad"),
    "head": ("softmax", "sigmoid"),
    "precision": ("auto", "fp32", "bf16"),
    "coords": ("normalized", "pixel"),
}


def _problem(spec: ModelSpec) -> str | None:
    problem = number_problem(spec)
    if problem:
        return problem
    for name, allowed in _CHOICES.items():
        if getattr(spec, name) not in allowed:
            return f"{name} {getattr(spec, name)!r} is not one of {', '.join(allowed)}"
    if not isinstance(spec.tta, bool):
        return f"tta must be true or false, got {spec.tta!r}"
    if spec.tta_shift and not spec.tta:
        return f"tta_shift {spec.tta_shift} needs tta (the shifted views are added to the mirror's)"
    return _classifier_problem(spec) if spec.task == "classify" else _field_problem(spec)


def _spec_numbers(spec: ModelSpec) -> list[tuple[str, Any, tuple[str, float, float]]]:
    """(key, value, (what it is, lowest, highest)) of every number of the spec the probabilities go through."""
    numbers = [(f"temperature[{i}]", t, TEMPERATURE_RANGE) for i, t in enumerate(spec.temperature or ())]
    if spec.normalize is not None:
        numbers.append(("normalize[0] (mean)", spec.normalize[0], NORMALIZE_MEAN_RANGE))
        numbers.append(("normalize[1] (std)", spec.normalize[1], NORMALIZE_STD_RANGE))
    if spec.threshold is not None:
        numbers.append(("threshold.value", spec.threshold.get("value"), PROBABILITY_RANGE))
    if spec.abstain_below is not None:
        numbers.append(("abstain_below", spec.abstain_below, PROBABILITY_RANGE))
    numbers += [(f"label_thresholds[{i}]", t, PROBABILITY_RANGE) for i, t in enumerate(spec.label_thresholds or ())]
    return numbers


def number_problem(spec: ModelSpec) -> str | None:
    """The first number of the spec outside its range (NaN and infinity are outside every one), or None:
    the one check of model.json's numbers, made on every load and before training or fitting saves one.

    >>> number_problem(ModelSpec.classifier("seed-cnn", ["a", "b"], (8, 8), "grayscale", temperature=(0.0,)))
    'temperature[0] must be a positive number from 0.001 to 1000, got 0.0'
    """
    for key, value, (what, low, high) in _spec_numbers(spec):
        real = isinstance(value, int | float) and not isinstance(value, bool)
        if not (real and math.isfinite(value) and low <= value <= high):
            return f"{key} must be {what} from {low:g} to {high:g}, got {value!r}"
    return None


def _positive_ints(values: Any, count: int) -> bool:
    return (
        isinstance(values, tuple)
        and len(values) == count
        and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in values)
    )


def _classifier_problem(spec: ModelSpec) -> str | None:
    # Images are always decoded to the spec's own size and colour mode, so new images cannot mismatch
    # the model; a spec that contradicts its own kwargs (edited by hand, or tampered) can, and would
    # otherwise fail deep inside the forward pass.
    if spec.color not in CHANNELS:
        return f"colour mode {spec.color!r} is not grayscale or rgb"
    channels = CHANNELS[spec.color]
    if spec.kwargs.get("in_channels", channels) != channels:
        return f"colour mode {spec.color} gives {channels} channel(s), the network takes {spec.kwargs['in_channels']}"
    if not _positive_ints(spec.input_size, 2):
        return f"input_size must be [height, width], got {spec.input_size!r}"
    if max(spec.input_size) > MAX_INPUT_SIDE:
        return f"input_size {list(spec.input_size)} is over the limit of {MAX_INPUT_SIDE:,} pixels a side"
    network_size = spec.kwargs.get("input_size", spec.input_size)
    if not isinstance(network_size, list | tuple) or list(network_size) != list(spec.input_size):
        return f"input_size {list(spec.input_size)} differs from the network's {spec.kwargs['input_size']}"
    if len(spec.classes) > MAX_CLASSES:
        return f"{len(spec.classes):,} classes is over the limit of {MAX_CLASSES:,}"
    if not all(isinstance(c, str) for c in spec.classes) or len(set(spec.classes)) != len(spec.classes):
        return f"classes must be distinct names, got {list(spec.classes)!r}"
    outputs = spec.kwargs.get("num_classes", len(spec.classes))
    if len(spec.classes) < (1 if spec.multi_label else 2) or len(spec.classes) != outputs:
        return f"{len(spec.classes)} class names for a network with {outputs} outputs"
    return _decision_problem(spec)


def _decision_problem(spec: ModelSpec) -> str | None:
    """Temperature and threshold must fit the head and the classes they were fitted for."""
    if spec.temperature is not None:
        expected = len(spec.classes) if spec.head == "sigmoid" else 1
        if len(spec.temperature) != expected:
            count = len(spec.temperature)
            return f"a {spec.head} head over {len(spec.classes)} classes takes {expected} temperature(s), got {count}"
    if spec.multi_label and spec.head != "sigmoid":
        return f"many labels per image take the sigmoid head, not {spec.head!r}"
    if spec.label_thresholds is not None and len(spec.label_thresholds) != len(spec.classes):
        return f"{len(spec.label_thresholds)} label thresholds for {len(spec.classes)} labels"
    if spec.label_thresholds is not None and not spec.multi_label:
        return "label thresholds decide many labels per image; this spec has one label per image"
    if spec.threshold is not None:
        if len(spec.classes) != 2:
            return f"a decision threshold needs two classes, the spec has {len(spec.classes)}"
        if spec.threshold.get("class") not in spec.classes:
            return f"threshold class {spec.threshold.get('class')!r} is not one of {', '.join(spec.classes)}"
    return None


def _field_problem(spec: ModelSpec) -> str | None:
    image = spec.image
    if image is None:
        return "an image-fit spec needs the fitted image's size (image)"
    if not _positive_ints((image.width, image.height, image.channels), 3):
        return f"image width, height and channels must be positive integers, got {image}"
    problem = field_image_problem(image.width, image.height, image.channels)
    if problem:
        return problem
    if spec.kwargs.get("out_features", image.channels) != image.channels:
        return f"the image has {image.channels} channel(s), the network outputs {spec.kwargs['out_features']}"
    return None


def field_image_problem(width: int, height: int, channels: int) -> str | None:
    """Why an image of this size cannot be fitted (or a spec claiming it cannot be loaded), or None.

    >>> field_image_problem(20000, 20000, 3)
    'the image is 20000x20000 = 400,000,000 pixels, over the limit of 268,435,456 pixels'
    """
    if max(width, height) > MAX_FIELD_SIDE:
        return f"the image is {width}x{height}, over the limit of {MAX_FIELD_SIDE:,} pixels a side"
    if width * height > MAX_FIELD_PIXELS:
        return (
            f"the image is {width}x{height} = {width * height:,} pixels, over the limit of {MAX_FIELD_PIXELS:,} pixels"
        )
    if channels > MAX_FIELD_CHANNELS:
        return f"the image has {channels} channels, over the limit of {MAX_FIELD_CHANNELS} (RGBA)"
    return None
