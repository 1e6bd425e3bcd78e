"""Exporting a trained classifier to another runtime: `RUN/model.onnx`, checked before it is kept.

The file takes float images in [0, 1], (N, C, H, W) at the run's size (any N), and returns the
run's class probabilities: everything after decoding is inside it, exactly as evaluation and
`Predictor` compute it (the spec's input normalisation, mirror TTA where the run uses it, the
fitted temperature, then the head's softmax or the seed's per-class sigmoid). What it needs from
outside (the class names, size, colour mode, fit, head, threshold) is in its metadata
(`metadata_props`), so a program without pixlearn can decode images as pixlearn does (README.md).

Before anything is written, onnxruntime runs the file on the run's test images (those of the final
evaluation, RUN/predictions.csv; or images given) and its probabilities are compared with pixlearn's
own in float32 (`Predictor`, precision fp32). A largest absolute difference above `TOLERANCE` is an
error and leaves no model.onnx (an older one is removed too: it cannot be trusted to match either).

    >>> from pixlearn.classify.inference.onnx import export
    >>> result = export("runs/demo")                 # doctest: +SKIP
    >>> result.path.name, result.max_difference < 1e-4  # doctest: +SKIP
    ('model.onnx', True)
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pixlearn.classify.config import ExportConfig
from pixlearn.classify.data.decoding import decode_files, decode_options
from pixlearn.classify.inference import decisions
from pixlearn.classify.inference.decisions import LABEL_SET_THRESHOLD
from pixlearn.classify.inference.forward import forward_logits, normalise
from pixlearn.classify.inference.heads import probabilities
from pixlearn.classify.inference.prediction import Predictor, collect_images
from pixlearn.core.errors import ConfigError, RunError
from pixlearn.core.options import check_options
from pixlearn.core.progress import SILENT, Progress, make_progress
from pixlearn.core.storage import rundir
from pixlearn.core.storage.files import check_output
from pixlearn.core.storage.spec import ModelSpec
from pixlearn.core.text import from_csv_cell
from pixlearn.models.loading import load_model

TOLERANCE = 1e-4  # largest absolute difference of a probability allowed between onnxruntime and pixlearn
OPSET = 18
INPUT_NAME, OUTPUT_NAME, LABELS_NAME = "images", "probabilities", "labels"


@dataclass(frozen=True)
class ExportResult:
    path: Path  # the file written
    max_difference: float  # largest |onnxruntime - pixlearn fp32| over every probability checked
    images: int  # how many images the check ran on
    source: str  # where they came from


class ExportedClassifier(nn.Module):
    """The network plus everything that follows decoding: [0, 1] images in, the run's probabilities out."""

    def __init__(self, model: nn.Module, spec: ModelSpec):
        super().__init__()
        self.net = model
        self.spec = spec

        thresholds = spec.label_thresholds or [LABEL_SET_THRESHOLD] * len(spec.classes)
        self.register_buffer("thresholds", torch.tensor(thresholds, dtype=torch.float32), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        x = normalise(images, self.spec.normalize)
        logits = forward_logits(self.net, x, self.spec.tta, self.spec.tta_shift)
        probs = probabilities(logits, self.spec.head, self.spec.temperature)
        if self.spec.multi_label:  # the decision too: each label where its probability reaches its threshold
            return probs, probs >= self.thresholds
        return probs


def onnx_metadata(spec: ModelSpec) -> dict[str, str]:
    """What a program needs to feed the file and read its output (metadata_props), as text.

    >>> spec = ModelSpec.classifier("seed-cnn", ["city", "nature"], (150, 150), "grayscale")
    >>> onnx_metadata(spec)["classes"], onnx_metadata(spec)["input_size"]
    ('["city", "nature"]', '[150, 150]')
    """
    return {
        "classes": rundir.strict_json(list(spec.classes)),
        "input_size": rundir.strict_json(list(spec.input_size or ())),  # [height, width]
        "color": str(spec.color),  # grayscale: 1 channel (Pillow mode L), rgb: 3
        "fit": spec.fit,  # squash | crop | pad, bilinear resampling (pixlearn.core.imaging.images.resize)
        "head": spec.head,  # softmax: probabilities sum to 1; sigmoid: one per class, need not
        "input": "float32 (N, C, H, W), pixel / 255 in [0, 1]; normalisation, TTA and temperature are inside",
        "tta": rundir.strict_json(spec.tta),
        "tta_shift": rundir.strict_json(spec.tta_shift),
        "temperature": rundir.strict_json(spec.temperature),
        "threshold": rundir.strict_json(spec.threshold),  # two classes: predict threshold.class at p >= value
        # many labels per image: a second output, `labels` (N, K) bool, each label at p >= its threshold
        "multi_label": rundir.strict_json(spec.multi_label),
        "label_thresholds": rundir.strict_json(spec.label_thresholds),
        "abstain_below": rundir.strict_json(spec.abstain_below),
        "model": spec.model,
    }


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    # The exporter logs a warning per torchvision operator it cannot register (torchvision is not
    # installed) and its progress; none of it concerns this model, and the check below is the proof.
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def onnx_bytes(model: nn.Module, spec: ModelSpec) -> bytes:
    """The ONNX file of `model` (float32, eval mode) under `spec`, with a dynamic batch dimension."""
    import onnx  # noqa: F401 - the exporter needs it; importing it here fails with its own clear message

    wrapper = ExportedClassifier(model.float().eval(), spec).eval()
    example = torch.rand(2, *spec.input_shape())
    with _quiet_exporter():
        program = torch.onnx.export(
            wrapper,
            (example,),
            dynamo=True,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME, LABELS_NAME] if spec.multi_label else [OUTPUT_NAME],
            dynamic_shapes=({0: torch.export.Dim("batch", min=1)},),
            opset_version=OPSET,
            verbose=False,
        )
    proto = program.model_proto
    proto.doc_string = f"pixlearn classifier {spec.model}: {len(spec.classes)} classes, {spec.head} probabilities"
    for key, value in onnx_metadata(spec).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    return proto.SerializeToString()


def onnx_probabilities(data: bytes, images: np.ndarray, output: str = OUTPUT_NAME) -> np.ndarray:
    """onnxruntime's output (the probabilities, or the `labels` of many labels per image) for float32 images
    (N, C, H, W) in [0, 1]: the first image alone, then the rest as one batch, so the dynamic batch
    dimension is exercised too."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # errors only
    session = onnxruntime.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    parts = [images[:1], images[1:]] if len(images) > 1 else [images]
    return np.concatenate([session.run([output], {INPUT_NAME: p})[0] for p in parts])


def check_images(
    run: Path, spec: ModelSpec, images: Sequence[str | os.PathLike] | None, sample: int, progress: Progress = SILENT
) -> tuple[np.ndarray, str]:
    """uint8 images (N, H, W, C) at the run's size to check the file on, and where they came from."""
    if images:
        paths, source = collect_images(images), "the images given"
    else:
        listed = run / "predictions.csv"
        if not listed.exists():
            raise RunError(
                f"{listed}: missing, so the run's test images are unknown; give images to check on (--images)"
            )
        paths = [Path(from_csv_cell(r.get("path", ""))) for r in rundir.read_csv(listed)]
        paths = [p for p in paths if p.is_file()]
        source = f"the run's test images ({listed.name})"
        if not paths:
            raise RunError(
                f"{listed}: none of the images it lists can be read here; give images to check on (--images)"
            )
    if len(paths) > sample:
        pick = np.random.default_rng(0).choice(len(paths), size=sample, replace=False)
        paths = [paths[i] for i in np.sort(pick)]
    progress.task("decode", len(paths))
    arr, _, _, skipped = decode_files(paths, decode_options(spec), progress=progress)
    if not len(arr):
        raise RunError(f"no image to check the export on could be decoded ({skipped[0][0]}: {skipped[0][1]})")
    return arr, source


def export(
    run: str | os.PathLike,
    out: str | os.PathLike | None = None,
    config: ExportConfig = ExportConfig(),  # noqa: B008 - never changed: the verbs only read a config
    progress: bool | None = None,
    *,
    images: Sequence[str | os.PathLike] | None = None,
) -> ExportResult:
    """Write the ONNX file `out` (None: RUN/model.onnx) and check it with onnxruntime against pixlearn's
    float32 probabilities on the run's test images (or `images`); RunError, and no file, if any
    probability differs by more than TOLERANCE. `progress`: None shows it when stderr is a terminal,
    True always, False never."""
    check_options(config)
    if config.format != "onnx":
        raise ConfigError(f"format (--format) {config.format!r} is not onnx")
    if out is not None:
        check_output(out)  # a device, FIFO or folder named as the output: refused before the export
    run_dir = rundir.RunDir(run)
    model, spec = load_model(run_dir.path, device="cpu")
    if spec.task != "classify":
        raise RunError(f"{run_dir.path}: holds a {spec.task} model; only classifiers are exported")
    with make_progress(progress) as bar:
        arr, source = check_images(run_dir.path, spec, images, config.sample, bar)
        bar.task("export and check", 2)
        uint8 = torch.from_numpy(arr).permute(0, 3, 1, 2)
        reference = Predictor(model, spec, torch.device("cpu"), precision="fp32").probabilities(uint8)
        data = onnx_bytes(model, spec)
        bar.advance()
        floats = uint8.float().div(255.0).numpy()
        difference = float(np.abs(onnx_probabilities(data, floats) - reference).max())
        if spec.multi_label:
            difference = max(
                difference, _decision_difference(onnx_probabilities(data, floats, LABELS_NAME), reference, spec)
            )
        bar.advance()
    target = Path(out) if out is not None else run_dir.path / "model.onnx"
    with run_dir.lock():
        if not difference <= TOLERANCE:  # NaN fails too
            target.unlink(missing_ok=True)
            raise RunError(
                f"{target}: not written: onnxruntime's probabilities differ from pixlearn's float32 ones by up "
                f"to {difference:.3g} on {len(arr)} images ({source}), over the limit of {TOLERANCE:g}"
            )
        rundir.write_bytes(target, data)
    return ExportResult(target, difference, len(arr), source)


def _decision_difference(labels: np.ndarray, reference: np.ndarray, spec: ModelSpec) -> float:
    """0 where the file's label decisions are pixlearn's (a probability within TOLERANCE of its threshold
    may fall either way); 1 (failing the check) where one differs elsewhere."""
    expected = decisions.present(reference, spec.label_thresholds)
    limits = np.asarray(spec.label_thresholds or [LABEL_SET_THRESHOLD] * reference.shape[1])
    differs = (labels.astype(bool) != expected) & (np.abs(reference - limits) > TOLERANCE)
    return 1.0 if differs.any() else 0.0


__all__ = ["ExportConfig", "ExportResult", "export"]
