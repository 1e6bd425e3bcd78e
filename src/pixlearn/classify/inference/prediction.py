"""Predicting labels of new images with a trained run.

    >>> from pixlearn.classify.inference.prediction import Predictor
    >>> predictor = Predictor.from_run("runs/demo")          # doctest: +SKIP
    >>> predictor.predict_image("new/photo.jpg")              # doctest: +SKIP
    Prediction(path='new/photo.jpg', label='face', probabilities={'face': 0.97, 'other': 0.03})

The model is loaded once; every later call reuses it. Folders are read in chunks and the CSV
is appended chunk by chunk, so a crash keeps the rows already written and `resume=True`
skips them on the next call.

A CSV is written by one `predict` at a time: its lock file beside it (`.NAME.pixlearn.lock`, held
for the whole write) refuses a second one, naming the first one's pid. Beside it too, the record of
the run that wrote it (`.NAME.pixlearn.json`: the weights' SHA-256), so `resume=True` appends only
to a CSV of the same weights: another run's, even with the same classes, is refused, naming both.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pixlearn.classify.config import PredictConfig
from pixlearn.classify.data.decoding import decode_files, decode_options
from pixlearn.classify.data.folders import find_image_files
from pixlearn.classify.inference import decisions
from pixlearn.classify.inference.forward import batched_logits, inference_model, input_batch_size, model_dtype
from pixlearn.classify.inference.heads import probabilities
from pixlearn.classify.inference.wording import csv_note, gallery_title, probability_caption
from pixlearn.core.devices import freed_memory_kept, keep_freed_memory, resolve_device, uses_bf16
from pixlearn.core.errors import DataError, RunError
from pixlearn.core.imaging import figures
from pixlearn.core.imaging.images import check_pixel_limit, decode_image, pixel_limit
from pixlearn.core.progress import Progress, make_progress
from pixlearn.core.storage import locks, rundir
from pixlearn.core.storage.classify_records import PredictionSource
from pixlearn.core.storage.files import check_output, check_regular_file, file_sha256, open_data_file
from pixlearn.core.storage.spec import ModelSpec
from pixlearn.core.text import csv_cell, from_csv_cell
from pixlearn.models.loading import load_model
from pixlearn.models.saliency import GradCam, explained_name

CHUNK = 256  # images decoded and written per step: bounds memory for folders of any size


@dataclass(frozen=True)
class Prediction:
    path: str
    label: str  # with many labels per image, `labels` joined by "|" (the CSV's labels cell)
    probabilities: dict[str, float]  # the sigmoid head's need not sum to 1
    abstained: bool = False  # top probability under the run's (or the call's) --abstain-below
    labels: tuple[str, ...] = ()  # many labels per image: those at or above their thresholds, in class order


class Predictor:
    """A loaded model plus the decoding its training used (size, colour mode, fit)."""

    def __init__(
        self,
        model: torch.nn.Module,
        spec: ModelSpec,
        device: torch.device,
        precision: str | None = None,
        tune_allocator: bool = False,
    ):
        if spec.task != "classify":
            raise RunError(f"the model is a {spec.task} model, not a classifier")
        spec.check()
        if tune_allocator:  # process-wide, so only when asked: activations then reuse freed memory
            keep_freed_memory()
        # The run's own precision unless asked otherwise: bf16 weights where training ran under bf16
        # autocast, so predictions equal the run's evaluation. Channels-last either way: oneDNN's
        # convolutions then skip a layout conversion per call; the same values in another memory order
        # (bench/README.md, "Inference: precision, batch size and layers").
        self.precision = precision or spec.precision
        self.model = inference_model(model, uses_bf16(self.precision, device))
        self.dtype = model_dtype(self.model)
        self.spec = spec
        self.device = device
        self.classes: list[str] = list(spec.classes)
        self.tta = spec.tta  # as the run's own evaluation scored its test set
        self.batch_size: int | None = None  # images per forward pass, chosen on the first call
        self.options = decode_options(spec)
        self.abstain_below = spec.abstain_below  # None: never abstain
        self.explainer: GradCam | None = None  # predict(explain=True): Grad-CAM beside the gallery

    @classmethod
    def from_run(
        cls,
        run: str | os.PathLike,
        config: PredictConfig = PredictConfig(),  # noqa: B008 - never changed: only read
        *,
        tune_allocator: bool = False,
    ) -> Predictor:
        """Load the model of a run on `config.device`, in `config.precision` (auto: the run's own), abstaining
        below `config.abstain_below` (None: the run's own); `tune_allocator`: devices.keep_freed_memory,
        process-wide (faster repeated calls)."""
        config.check()
        dev = resolve_device(config.device)
        model, spec = load_model(run, device=dev)
        if spec.task != "classify":
            raise RunError(f"{run}: holds a {spec.task} model, not a classifier")
        predictor = cls(model, spec, dev, None if config.precision == "auto" else config.precision, tune_allocator)
        if config.abstain_below is not None:
            predictor.abstain_below = config.abstain_below
        return predictor

    @property
    def classes_(self) -> tuple[str, ...]:
        """The class names, in the order of `predict_proba`'s columns (scikit-learn's name)."""
        return tuple(self.classes)

    def predict(self, images: Images) -> list[str] | list[tuple[str, ...]]:
        """The label of each image (paths, a folder, bytes, PIL images or uint8 arrays), as the CSV has it;
        with many labels per image, the set of labels each image is given (a tuple, in class order)."""
        probs = self.predict_proba(images)
        if self.spec.multi_label:
            return [self._label_set(row) for row in decisions.present(probs, self.spec.label_thresholds)]
        return [self.classes[int(i)] for i in decisions.decide(probs, self.classes, self.spec.threshold)]

    def _label_set(self, present: np.ndarray) -> tuple[str, ...]:
        return tuple(c for c, on in zip(self.classes, present, strict=True) if on)

    def predict_proba(self, images: Images) -> np.ndarray:
        """Class probabilities (n, classes) of each image (paths, a folder, bytes, PIL images or uint8
        arrays), decoded as in training; columns in the order of `classes_`."""
        arrays = [self._decoded(item) for item in _items(images)]
        if not arrays:
            return np.zeros((0, len(self.classes)), dtype=np.float32)
        return self.probabilities(torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2))

    def _decoded(self, item: Any) -> np.ndarray:
        source = item
        if not isinstance(item, bytes | str | os.PathLike):  # arrays and PIL images: through PNG bytes,
            import io  # so they meet the one decoder (colour, size, fit) as a file would

            from PIL import Image

            picture = item
            if isinstance(item, np.ndarray):
                picture = Image.fromarray(item[..., 0] if item.ndim == 3 and item.shape[-1] == 1 else item)
            buffer = io.BytesIO()
            picture.save(buffer, format="PNG")
            source = buffer.getvalue()
        return decode_image(source, self.options.color, self.options.size, self.options.fit)

    @torch.inference_mode()
    def probabilities(self, images: torch.Tensor) -> np.ndarray:
        """Class probabilities for uint8 images (N, C, H, W), in cache-sized batches."""
        if self.batch_size is None:
            self.batch_size = input_batch_size(self.model, images, self.device)
        logits = batched_logits(
            self.model,
            images,
            self.device,
            self.tta,
            self.batch_size,
            self.dtype,
            self.spec.normalize,
            self.spec.tta_shift,
        )
        return probabilities(logits, self.spec.head, self.spec.temperature).cpu().numpy()

    def predict_array(self, image: np.ndarray, path: str = "<array>") -> Prediction:
        """One decoded uint8 image (H, W, C) already at the model's input size."""
        batch = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).unsqueeze(0)
        return self._prediction(path, self.probabilities(batch)[0])

    def predict_image(self, source: str | os.PathLike | bytes) -> Prediction:
        """Decode one image file (or bytes) as in training and predict its label."""
        arr = decode_image(source, self.options.color, self.options.size, self.options.fit)
        return self.predict_array(arr, "<bytes>" if isinstance(source, bytes) else str(source))

    def _prediction(self, path: str, probs: np.ndarray) -> Prediction:
        if self.spec.multi_label:
            labels = self._label_set(decisions.present(probs[None], self.spec.label_thresholds)[0])
            return Prediction(path, "|".join(labels), dict(zip(self.classes, probs.tolist(), strict=True)),
                              labels=labels)  # fmt: skip
        label = self.classes[int(decisions.decide(probs[None], self.classes, self.spec.threshold)[0])]
        abstained = bool(decisions.abstained(probs[None], self.abstain_below)[0])
        return Prediction(path, label, dict(zip(self.classes, probs.tolist(), strict=True)), abstained)

    def predict_files(
        self, paths: Sequence[Path], strict: bool = False
    ) -> Iterator[tuple[list[Prediction], list[tuple[str, str]], np.ndarray]]:
        """Yield (predictions, skipped, decoded images) chunk by chunk."""
        for start in range(0, len(paths), CHUNK):
            chunk = list(paths[start : start + CHUNK])
            arr, kept, _, skipped = decode_files(chunk, self.options, strict=strict)
            probs = self.probabilities(torch.from_numpy(arr).permute(0, 3, 1, 2)) if len(arr) else np.zeros((0, 0))
            yield [self._prediction(str(chunk[i]), p) for i, p in zip(kept, probs, strict=True)], skipped, arr


Images = Any  # paths, a folder, bytes, PIL images or uint8 arrays; one of them, or a sequence of them


def _items(images: Images) -> list[Any]:
    """The single images of `images`: a folder's image files, or each item of a sequence."""
    if isinstance(images, np.ndarray) and images.ndim == 4:
        return list(images)
    if isinstance(images, str | os.PathLike) and Path(images).is_dir():
        return [str(p) for p in collect_images([images])]
    if isinstance(images, str | os.PathLike | bytes | np.ndarray) or not isinstance(images, Sequence):
        return [images]
    return [item for one in images for item in _items(one)]


def collect_images(inputs: Sequence[str | os.PathLike], skipped: list[tuple[str, str]] | None = None) -> list[Path]:
    """Files given directly plus every image under the folders given; subfolders that cannot be
    read are appended to `skipped` as (folder, reason)."""
    paths: list[Path] = []
    for item in inputs:
        item = Path(item)
        if not item.exists():
            raise DataError(f"{item}: path does not exist")
        paths += find_image_files(item, skipped)
    if not paths:
        raise DataError(f"no images found in {', '.join(map(str, inputs))}")
    return paths


@dataclass(frozen=True)
class PredictResult:
    """What `predict` made: one Prediction per image read, the files skipped (path, reason), and the CSV
    and gallery written (None: not written)."""

    predictions: tuple[Prediction, ...]
    skipped: tuple[tuple[str, str], ...]
    csv: Path | None
    gallery: Path | None


def _beside(csv_path: Path, suffix: str) -> Path:
    """A file pixlearn keeps beside a prediction CSV: its lock (.lock) or its source record (.json)."""
    return csv_path.with_name(f".{csv_path.name}.pixlearn{suffix}")


@contextlib.contextmanager
def _prediction_csv(csv_path: Path, header: list[str], source: PredictionSource, resume: bool) -> Iterator[set[str]]:
    """Hold the CSV's lock for the block and yield the paths it already holds (`resume`; else it is
    started again with `header`). Its source record is replaced only once the CSV is this run's."""
    check_output(csv_path)  # a device or folder named as the CSV: refused before anything is made beside it
    if resume:  # rows are appended to the file itself: never through a link
        check_regular_file(csv_path, missing_ok=True, follow_links=False)
    try:
        csv_path.parent.mkdir(parents=True, exist_ok=True)  # as every output's folder is made (rundir.atomic_path)
    except OSError as exc:
        raise rundir.write_error(csv_path, exc) from exc
    with locks.hold_file(_beside(csv_path, ".lock"), csv_path, "predict into another CSV"):
        done = _done_paths(csv_path, header, source) if resume else set()
        if not resume or not csv_path.exists() or csv_path.stat().st_size == 0:
            # The old record goes first: a kill before the new one leaves a CSV of no known source,
            # which --resume refuses while it holds rows, never a record naming the wrong run.
            _beside(csv_path, ".json").unlink(missing_ok=True)
            rundir.write_csv(csv_path, header, [])
        source.write(_beside(csv_path, ".json"))
        yield done


def _done_paths(csv_path: Path, header: list[str] | None = None, source: PredictionSource | None = None) -> set[str]:
    """Paths already in the prediction CSV (for resume), read through core.files (no FIFO).

    The CSV must have this run's `header` (path, label, p_CLASS per class): rows appended under
    another run's columns would be misread, so any other CSV is refused, naming it and its columns.
    With `source`, a CSV holding rows must have been written by the same weights (`_check_source`).
    """
    if not csv_path.exists():
        return set()
    try:
        with open_data_file(csv_path, "r", newline="", encoding="utf-8") as f:  # the header before any change
            reader = csv.reader(f)
            found = [from_csv_cell(c) for c in next(reader, header or [])]  # an empty file gets it
            has_rows = next(reader, None) is not None
        if header is not None and found != header:
            raise RunError(
                f"{csv_path}: not a prediction CSV of this run (its columns are {_columns(found)}; this "
                f"run writes {_columns(header)}); predict into another CSV, or start this one again "
                "without resuming (--resume, resume=True)"
            )
        if source is not None and has_rows:
            _check_source(csv_path, source)
        _drop_torn_last_row(csv_path)
        with open_data_file(csv_path, "r", newline="", encoding="utf-8") as f:
            return {from_csv_cell(row[0]) for row in list(csv.reader(f))[1:] if row and row[0]}
    except (csv.Error, UnicodeDecodeError) as exc:
        raise RunError(f"{csv_path}: not a valid UTF-8 CSV file to resume ({exc})") from exc
    except OSError as exc:
        raise rundir.write_error(csv_path, exc) from exc


def _check_source(csv_path: Path, source: PredictionSource) -> None:
    """RunError unless the CSV's source record names the weights of `source` (same SHA-256)."""
    record_file = _beside(csv_path, ".json")
    written_by = PredictionSource.read_if_present(record_file)
    again = "predict into another CSV, or start this one again without resuming (--resume, resume=True)"
    if written_by is None:
        raise RunError(
            f"{csv_path}: no record of the run that wrote it ({record_file.name} is missing: written by another "
            f"program, an older pixlearn or a command killed as it started), so rows of {source.run} would be "
            f"mixed into it; {again}"
        )
    if written_by.weights_sha256 != source.weights_sha256:
        raise RunError(
            f"{csv_path}: written by the run {written_by.run} (weights SHA-256 {written_by.weights_sha256[:12]}), "
            f"not by {source.run} (weights SHA-256 {source.weights_sha256[:12]}); {again}"
        )


def _columns(cells: list[str], shown: int = 6) -> str:
    text = ",".join(c[:40] for c in cells[:shown])
    return text + (f",... ({len(cells)} columns)" if len(cells) > shown else "") if cells else "(none)"


def _drop_torn_last_row(csv_path: Path) -> None:
    # A process killed mid-append leaves a last row without its end; resuming would glue the next row
    # onto it. Cut the file back to its last complete row, so that file is predicted again. A row ends
    # at a newline outside quotes: a file name may hold a newline, written inside its quoted cell, so
    # the quotes before each newline are counted (an even number: outside).
    with open_data_file(csv_path, "rb+") as f:
        quotes = sum(block.count(b'"') for block in iter(lambda: f.read(1 << 20), b""))
        end = start = f.tell()
        while start > 0:  # backwards block by block: the CSV may be large, its torn row is short
            cut = start
            start = max(0, cut - 65536)
            f.seek(start)
            block = f.read(cut - start)
            newline = len(block)
            while (found := block.rfind(b"\n", 0, newline)) >= 0:
                quotes -= block.count(b'"', found + 1, newline)  # now the quotes before this newline
                newline = found
                if quotes % 2 == 0:
                    if start + found + 1 < end:
                        f.truncate(start + found + 1)
                    return
            quotes -= block.count(b'"', 0, newline)
        f.truncate(0)


def _row_path(path: str | os.PathLike) -> str:
    # Names that are not UTF-8 are written as \xNN (rundir.printable); --resume compares the same form.
    return rundir.printable(str(path))


def predict(
    run: str | os.PathLike,
    images: Sequence[str | os.PathLike] | str | os.PathLike,
    out: str | os.PathLike | None = None,
    config: PredictConfig = PredictConfig(),  # noqa: B008 - never changed: the verbs only read a config
    progress: bool | None = None,
    *,
    gallery: str | os.PathLike | None = None,
    resume: bool = False,
) -> PredictResult:
    """Predict every image in `images` (files or folders); write the CSV `out` (None: none written; path,
    label, an `abstained` column where the run or `config.abstain_below` asks for one, one probability
    column per class, and for the sigmoid head a `note` column saying they need not sum to 1) and the PNG
    `gallery` of a seeded sample of them (None: none). The label follows the run's threshold where it has
    one. `config.explain`: the gallery again with Grad-CAM overlays of the predicted class (NAME_gradcam.png).
    `resume`: keep the rows already in `out` and predict only the rest. `progress`: None shows it when
    stderr is a terminal, True always, False never (`core.progress`)."""
    check_pixel_limit(config.max_pixels)
    predictor = Predictor.from_run(run, config)
    if config.explain and gallery:  # the float32 network itself: the inference copy packs and may cast it
        predictor.explainer = GradCam.for_spec(load_model(run, device=predictor.device)[0], predictor.spec)
    for target in (out, gallery):  # a device, FIFO or folder named as an output: refused before any work
        if target:
            check_output(target)
    unread: list[tuple[str, str]] = []
    paths = collect_images([images] if isinstance(images, str | os.PathLike) else images, unread)
    # Writing into the run directory (the demo's predictions) takes its lock, as every writer does.
    run_dir = rundir.RunDir(run)
    source = None  # the run's record beside the CSV: weights hashed only when there is a CSV
    if out:
        source = PredictionSource(run=str(run), weights_sha256=file_sha256(run_dir.weights), classes=predictor.classes_)
    with (
        run_dir.lock_for(out, gallery),
        freed_memory_kept(),
        pixel_limit(config.max_pixels),
        make_progress(progress) as bar,
    ):
        result = _predict_paths(predictor, paths, out, gallery, resume, config, bar, source)
    return dataclasses.replace(result, skipped=(*unread, *result.skipped))


def _predict_paths(
    predictor: Predictor,
    paths: list[Path],
    csv_path: str | os.PathLike | None,
    gallery: str | os.PathLike | None,
    resume: bool,
    config: PredictConfig,
    progress: Progress,
    source: PredictionSource | None,
) -> PredictResult:
    csv_file = Path(csv_path) if csv_path else None
    if csv_file is None or source is None:
        return _predict_into(predictor, paths, None, gallery, config, progress)
    marked = ["abstained"] if predictor.abstain_below is not None else []
    header = [
        "path",
        "labels" if predictor.spec.multi_label else "label",
        *marked,
        *[f"p_{c}" for c in predictor.classes],
        *csv_note(predictor.spec.head),
    ]
    with _prediction_csv(csv_file, header, source, resume) as done:
        paths = [p for p in paths if _row_path(p) not in done]
        return _predict_into(predictor, paths, csv_file, gallery, config, progress)


def _predict_into(
    predictor: Predictor,
    paths: list[Path],
    csv_file: Path | None,
    gallery: str | os.PathLike | None,
    config: PredictConfig,
    progress: Progress,
) -> PredictResult:
    rng = np.random.default_rng(config.seed)
    predictions: list[Prediction] = []
    skipped: list[tuple[str, str]] = []
    shown: list[tuple[np.ndarray, Prediction]] = []
    progress.task("predict", len(paths))
    for chunk, bad, arr in predictor.predict_files(paths, strict=config.strict):
        predictions += chunk
        skipped += bad
        if csv_file is not None:
            _append_rows(csv_file, chunk, predictor.abstain_below is not None, csv_note(predictor.spec.head))
        shown = _reservoir(shown, list(zip(arr, chunk, strict=True)), config.gallery_size, len(predictions), rng)
        progress.advance(len(chunk) + len(bad))
    gallery_file = Path(gallery) if gallery else None
    if gallery_file is not None and shown:
        fig = figures.image_grid(
            np.stack([a for a, _ in shown]),
            [p.label for _, p in shown],
            [probability_caption(p.probabilities) for _, p in shown],
            title=gallery_title("Predictions on new images", predictor.spec.head),
            caption_color="#333333",  # no ground truth here: red would read as "wrong"
        )
        figures.save(fig, gallery_file)
        if predictor.explainer is not None:
            labels = [p.label for _, p in shown]
            targets = [predictor.classes.index(label) for label in labels]
            fig = predictor.explainer.gallery(np.stack([a for a, _ in shown]), targets, labels, "Predictions")
            figures.save(fig, explained_name(gallery_file))
    return PredictResult(tuple(predictions), tuple(skipped), csv_file, gallery_file)


def _append_rows(csv_file: Path, chunk: list[Prediction], abstain: bool, note: dict[str, str]) -> None:
    # Appending (not rewriting) is what lets a crash keep every finished chunk; a failed append (a
    # full disk) is a RunError naming the CSV, which keeps its complete rows (--resume cuts a torn one).
    try:
        with open_data_file(csv_file, "a", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            for p in chunk:
                marked = [str(p.abstained).lower()] if abstain else []
                probs = [f"{v:.6f}" for v in p.probabilities.values()]
                cells = [_row_path(p.path), p.label, *marked, *probs, *note.values()]
                writer.writerow([csv_cell(c) for c in cells])  # as rundir.write_csv: no formula
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        raise rundir.write_error(csv_file, exc) from exc


def _reservoir(kept: list, new: list, k: int, seen: int, rng: np.random.Generator) -> list:
    """Keep a uniform random sample of k items from a stream (reservoir sampling)."""
    start = seen - len(new)
    for offset, item in enumerate(new):
        n = start + offset
        if len(kept) < k:
            kept.append(item)
        else:
            j = int(rng.integers(0, n + 1))
            if j < k:
                kept[j] = item
    return kept
