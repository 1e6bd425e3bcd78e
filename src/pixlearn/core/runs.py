"""The run directory: the one on-disk format shared by classification and image-fitting runs.

    runs/NAME/
      config.json           resolved options of the run (everything needed to repeat it)
      model.safetensors     weights                  } written together at the end;
      model.json            spec: registry name,     } loading reads only these two files and
                            constructor kwargs, ...  } never unpickles or executes anything
      checkpoint.safetensors / checkpoint.json       every epoch, for --resume
      history.csv           one row per epoch (or logged step)
      metrics.json          final figures; its presence marks the run complete
      data_summary.json     classification: images per class and split, sizes, skipped files
      skipped.csv           files that could not be used, with the reason
      log.txt               what the run printed, with times
      figures/*.png         every figure
      report.html           everything above in one page

Every file is written to a temporary name and renamed, so a crash never leaves half a file.

Loading a model needs the registry: `pixlearn.models.loading.load_model`.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from pixlearn.core.errors import RunError
from pixlearn.core.spec import SPEC_NAME, SPEC_VERSION, ModelSpec

SPEC_FORMAT = f"{SPEC_NAME}/{SPEC_VERSION}"
CHECKPOINT_FORMAT = "pixlearn-checkpoint/1"


# ---------------------------------------------------------------------------------- atomic writes


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it is renamed over `path` in one step."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp makes the file private (0600); give it the mode a plain open() would have.
        os.chmod(tmp_path, 0o666 & ~_current_umask())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def write_text(path: str | os.PathLike, text: str) -> None:
    write_bytes(path, printable(text).encode("utf-8"))


def printable(text: str) -> str:
    """`text` safe to write as UTF-8: bytes of a file name that are not UTF-8 (which Python keeps
    as surrogate escapes) become `\\xNN`, so a strange name never stops a CSV or the log.

    >>> printable("caf\\udce9.png")
    'caf\\\\xe9.png'
    """
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # lone surrogates that did not come from a file name
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, default=_json_default) + "\n")


def write_csv(path: str | os.PathLike, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows)
    write_text(path, buffer.getvalue())


def read_json(path: str | os.PathLike) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError as exc:
        raise RunError(f"{path}: file not found") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RunError(f"{path}: not valid JSON ({exc})") from exc


def read_csv(path: str | os.PathLike) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, tuple | set | frozenset):
        return list(obj)
    if hasattr(obj, "item"):  # numpy / torch scalars
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"cannot write {type(obj).__name__} as JSON")


# ---------------------------------------------------------------------------------- the directory


class RunDir:
    """Paths of one run directory, and the checks made before anything is trained."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.created = False  # whether prepare() made the directory (so a failure may remove it)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    config = property(lambda self: self.path / "config.json")
    weights = property(lambda self: self.path / "model.safetensors")
    spec = property(lambda self: self.path / "model.json")
    checkpoint = property(lambda self: self.path / "checkpoint.safetensors")
    checkpoint_spec = property(lambda self: self.path / "checkpoint.json")
    history = property(lambda self: self.path / "history.csv")
    metrics = property(lambda self: self.path / "metrics.json")
    data_summary = property(lambda self: self.path / "data_summary.json")
    skipped = property(lambda self: self.path / "skipped.csv")
    log_file = property(lambda self: self.path / "log.txt")
    figures = property(lambda self: self.path / "figures")
    report = property(lambda self: self.path / "report.html")

    def figure(self, name: str) -> Path:
        return self.figures / name

    @property
    def is_complete(self) -> bool:
        return self.metrics.exists() and self.weights.exists()

    def prepare(self, overwrite: bool = False, resume: bool = False) -> RunDir:
        """Create the directory, refusing to clobber a finished run and checking it is writable.

        Called before training starts, so a bad --out costs nothing.
        """
        self.created = not self.path.exists()
        if self.path.exists() and not self.path.is_dir():
            raise RunError(f"{self.path}: exists and is not a directory")
        if self.is_complete and not (overwrite or resume):
            raise RunError(
                f"{self.path}: holds a finished run; overwrite it (--overwrite, or overwrite=True) "
                "or choose another output directory"
            )
        if resume and not self.checkpoint.exists() and not self.is_complete:
            raise RunError(f"{self.path}: nothing to resume (no checkpoint.safetensors)")
        if self.checkpoint_spec.exists() and not self.is_complete and not (overwrite or resume):
            # Starting afresh would replace the checkpoint of the interrupted run: its epochs would be lost.
            raise RunError(
                f"{self.path}: holds an interrupted run; resume it (--resume, or resume=True) "
                "or overwrite it to start again (--overwrite, or overwrite=True)"
            )
        if overwrite and not resume:
            for stale in (self.metrics, self.checkpoint, self.checkpoint_spec, self.history, self.report):
                if stale.exists():
                    stale.unlink()
        try:
            self.figures.mkdir(parents=True, exist_ok=True)
            self._remove_partial_files()
            probe = self.path / ".write-test"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise RunError(f"{self.path}: cannot write the run directory ({exc.strerror or exc})") from exc
        return self

    @contextlib.contextmanager
    def removed_if_failed(self) -> Iterator[None]:
        """Remove the directory again if the block fails before it holds anything worth keeping.

        Only a directory that `prepare` created itself, and only while it holds no checkpoint: a bad
        data path leaves no empty run folder behind, and an interrupted run keeps what it trained.
        """
        try:
            yield
        except BaseException as failure:
            if self.created and not self.checkpoint_spec.exists() and self.path.is_dir():
                try:
                    shutil.rmtree(self.path)
                except OSError as exc:  # the first error is the one to report; this one rides along
                    failure.add_note(f"(could not remove the unfinished {self.path}: {exc})")
            raise

    def _remove_partial_files(self) -> None:
        # A process killed inside atomic_path leaves its temporary file (never the target): tidy up.
        for folder in (self.path, self.figures):
            for partial in folder.glob(".*.tmp"):
                partial.unlink(missing_ok=True)

    def log(self, message: str) -> None:
        """Append a time-stamped line to log.txt (appends are line-sized, so no rename needed)."""
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "a", encoding="utf-8") as f:
            f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {printable(message)}\n")


# ---------------------------------------------------------------------------------- models


def save_model(model: nn.Module, spec: ModelSpec, directory: str | os.PathLike, stem: str = "model") -> None:
    """Write `stem.safetensors` (weights) and `stem.json` (the spec) into `directory`."""
    directory = Path(directory)
    state = {k: v.detach().to("cpu").contiguous() for k, v in _plain_state_dict(model).items()}
    with atomic_path(directory / f"{stem}.safetensors") as tmp:
        save_file(state, str(tmp), metadata={"format": SPEC_FORMAT, "model": spec.model})
    write_json(directory / f"{stem}.json", spec.to_dict())


def _plain_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    # DistributedDataParallel and torch.compile wrap the model; save the inner one's names.
    return unwrap(model).state_dict()


def unwrap(model: nn.Module) -> nn.Module:
    """The network inside DistributedDataParallel (`.module`) and torch.compile (`._orig_mod`) wrappers."""
    inner = getattr(model, "module", model)
    return getattr(inner, "_orig_mod", inner)


def read_spec(directory: str | os.PathLike, stem: str = "model") -> ModelSpec:
    path = Path(directory) / f"{stem}.json"
    return ModelSpec.from_dict(read_json(path), path)


def read_weights(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a safetensors file; anything else (a pickle, a zip, garbage) is refused unread."""
    path = Path(path)
    if not path.exists():
        raise RunError(f"{path}: file not found")
    with open(path, "rb") as f:
        head = f.read(9)
    # safetensors starts with an 8-byte header length, then the JSON header's "{". The length's
    # first byte may well be 0x80, so a pickle is recognised only once the "{" is missing.
    if head[8:9] != b"{":
        if head[:1] == b"\x80" or head[:2] == b"PK":
            raise RunError(f"{path}: looks like a pickle / torch.save file; only safetensors weights are loaded")
        raise RunError(f"{path}: not a valid safetensors file (no safetensors header)")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise RunError(f"{path}: not a valid safetensors file ({exc})") from exc


def load_state_checked(model: nn.Module, state: Mapping[str, torch.Tensor], source: str | os.PathLike) -> None:
    """Load weights whose names and shapes must match the model exactly."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    if missing or extra:
        raise RunError(f"{source}: weights do not match the model (missing {missing[:5]}, unexpected {extra[:5]})")
    for key, tensor in expected.items():
        if tuple(state[key].shape) != tuple(tensor.shape):
            raise RunError(
                f"{source}: tensor {key!r} has shape {tuple(state[key].shape)}, the model needs {tuple(tensor.shape)}"
            )
        if state[key].is_floating_point() != tensor.is_floating_point():
            # load_state_dict would cast silently (an int tensor truncated into float weights).
            raise RunError(f"{source}: tensor {key!r} is {state[key].dtype}, the model needs {tensor.dtype}")
    model.load_state_dict(state, strict=True)


# ---------------------------------------------------------------------------------- checkpoints


def save_checkpoint(run: RunDir, model: nn.Module, optimizer: torch.optim.Optimizer, state: Mapping[str, Any]) -> None:
    """Model and optimizer tensors to checkpoint.safetensors; everything else to checkpoint.json.

    The JSON is written last: a checkpoint counts only once both files are complete.
    """
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in _plain_state_dict(model).items()}
    opt = optimizer.state_dict()
    scalars: dict[str, dict[str, Any]] = {}
    for index, slot in opt["state"].items():
        for name, value in slot.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{index}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(index), {})[name] = value
    with atomic_path(run.checkpoint) as tmp:
        save_file(tensors, str(tmp), metadata={"format": CHECKPOINT_FORMAT})
    write_json(
        run.checkpoint_spec,
        {"format": CHECKPOINT_FORMAT, "param_groups": opt["param_groups"], "optim_scalars": scalars, **state},
    )


def load_checkpoint(run: RunDir, model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Restore model and optimizer from the run's checkpoint; return the JSON state."""
    meta = read_json(run.checkpoint_spec)
    if not isinstance(meta, dict) or meta.get("format") != CHECKPOINT_FORMAT:
        raise RunError(f"{run.checkpoint_spec}: not a pixlearn checkpoint")
    tensors = read_weights(run.checkpoint)
    inner = unwrap(model)
    model_state = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    load_state_checked(inner, model_state, run.checkpoint)
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    for index, names in meta.get("optim_scalars", {}).items():
        state.setdefault(int(index), {}).update(names)
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    return meta
