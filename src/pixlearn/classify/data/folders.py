"""Folder trees of images -> labelled samples and train / test splits.

The seed's layout is `train/city/buildings/x.jpg`: a split folder, then label folders. Labels
come from the path in one of three ways (or from a CSV of `path,label`):

- `first`: the first folder under the split (`train/nature/forest/x.jpg` -> `nature`), as the seed;
- `leaf`: the folder holding the file (`forest`);
- groups: explicit rules, `{"city": ["buildings", "street"], "nature": ["forest", ...]}`.

    >>> import tempfile
    >>> from pathlib import Path
    >>> from pixlearn.classify.demo import make_faces_data
    >>> from pixlearn.classify.data.folders import LabelRule, find_splits
    >>> tmp = tempfile.TemporaryDirectory()
    >>> data = make_faces_data(Path(tmp.name) / "data")  # the faces tree: train/face/lfw-faces/img000.png, ...
    >>> splits = find_splits(data, LabelRule("first"), val_split=0.2, seed=0)
    >>> len(splits.train), len(splits.test), splits.classes
    (140, 40, ['face', 'other'])

Decoding the files found here is `decoding.py`'s job.
"""

from __future__ import annotations

import difflib
import os
import unicodedata
from collections import Counter, deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pixlearn.classify.data.csv_files import labelled_rows
from pixlearn.classify.data.label_sets import iterative_split
from pixlearn.core.errors import DataError
from pixlearn.core.imaging.images import is_image_file
from pixlearn.core.storage.files import os_reason
from pixlearn.core.storage.spec import MAX_CLASSES

SPLIT_NAMES = {"train": ("train", "training"), "test": ("test", "testing", "val", "valid", "validation")}


# ---------------------------------------------------------------------------------- labels


@dataclass(frozen=True)
class LabelRule:
    """How a path under a split folder becomes a label."""

    mode: str = "first"  # first | leaf | groups
    groups: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # label -> folder names
    separator: str | None = None  # many labels per image (--multi-label): a CSV's `labels` cells joined by it

    def label(self, relative: Path) -> str | None:
        """The label of a file at `relative` (to its split folder); None for files at the top."""
        folders = relative.parts[:-1]
        if not folders:
            return None
        if self.mode == "first":
            return folders[0]
        if self.mode == "leaf":
            return folders[-1]
        if self.mode == "groups":
            hits = {lab for lab, names in self.groups.items() if any(f in names for f in folders)}
            if len(hits) > 1:
                raise DataError(f"{relative}: matches more than one --group rule ({', '.join(sorted(hits))})")
            return hits.pop() if hits else None
        raise DataError(f"unknown label mode {self.mode!r}; choose first, leaf or groups")


def parse_groups(rules: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """Parse `--group city=buildings,street` rules into {"city": ("buildings", "street")}.

    >>> parse_groups(["city=buildings,street", "nature=forest"])
    {'city': ('buildings', 'street'), 'nature': ('forest',)}
    """
    groups: dict[str, tuple[str, ...]] = {}
    owner: dict[str, str] = {}
    for rule in rules:
        label, sep, folders = rule.partition("=")
        names = tuple(f.strip() for f in folders.split(",") if f.strip())
        if not sep or not label.strip() or not names:
            raise DataError(f"--group {rule!r}: expected LABEL=FOLDER[,FOLDER...]")
        label = label.strip()
        if label in groups:
            raise DataError(f"--group {rule!r}: label {label!r} is given twice")
        for name in names:
            if name in owner:
                raise DataError(f"--group: folder {name!r} is in both {owner[name]!r} and {label!r}")
            owner[name] = label
        groups[label] = names
    return groups


# ---------------------------------------------------------------------------------- discovery


@dataclass(frozen=True)
class Sample:
    path: Path
    label: str | tuple[str, ...] | None  # a tuple (maybe empty) with many labels per image


def label_names(samples: Sequence[Sample]) -> set[str]:
    """Every label the samples carry (each label of a label set)."""
    names: set[str] = set()
    for s in samples:
        if isinstance(s.label, tuple):
            names.update(s.label)
        elif s.label is not None:
            names.add(str(s.label))
    return names


def find_image_files(root: str | os.PathLike, skipped: list[tuple[str, str]] | None = None) -> list[Path]:
    """Image files under `root`, sorted, hidden entries skipped; folders reached through a symbolic
    link are followed once (`walk_folders`: a loop or a second way into a folder is skipped with the
    reason, never followed again). A subfolder that cannot be listed (permission denied) is appended to
    `skipped` as (folder, reason); `root` itself unreadable is a DataError. Files that are not regular
    (a FIFO named x.png) are listed here and refused by the decoder, which names them."""
    root = Path(root)
    if not root.exists():
        raise DataError(f"{root}: path does not exist")
    if not root.is_dir():
        return [root]
    found: list[Path] = []
    for folder, files in walk_folders(root, skipped):
        found.extend(folder / f for f in files if not f.startswith(".") and is_image_file(f))
    return sorted(found)


def walk_folders(root: Path, skipped: list[tuple[str, str]] | None = None) -> Iterator[tuple[Path, list[str]]]:
    """(folder, file names) of `root` and every folder under it, hidden folders left out. A folder that
    is a symbolic link is listed under the link's path (so `train/cats -> /photos/cats` is the class
    cats), after the real folders; each folder is listed once: a link back to a folder that holds it
    (a loop) or into a folder already listed is appended to `skipped` as (link, reason). A folder that
    cannot be listed is appended to `skipped` too; `root` itself unreadable is a DataError."""
    listed: dict[tuple[int, int], Path] = {_folder_identity(root): root}  # (device, inode) -> where listed
    links: deque[Path] = deque()

    def skip(path: Path | str, reason: str) -> None:
        if skipped is not None:
            skipped.append((str(path), reason))

    def unreadable(exc: OSError) -> None:
        folder = exc.filename if exc.filename is not None else root
        if Path(folder) == root:
            raise DataError(f"{root}: cannot read the folder ({os_reason(exc)})") from exc
        skip(folder, f"folder not read ({os_reason(exc)})")

    top: Path | None = root
    while top is not None:
        for folder, dirs, files in os.walk(top, onerror=unreadable, followlinks=False):
            kept = []
            for name in sorted(d for d in dirs if not d.startswith(".")):
                path = Path(folder) / name
                if path.is_symlink():
                    links.append(path)  # followed once every real folder is listed
                elif (reason := _listed_already(path, listed)) is not None:
                    skip(path, reason)  # the same folder mounted twice
                else:
                    kept.append(name)
            dirs[:] = kept
            yield Path(folder), files
        top = None
        while links and top is None:
            link = links.popleft()
            reason = _listed_already(link, listed)
            if reason is None:
                top = link
            else:
                skip(link, reason)


def _folder_identity(path: Path) -> tuple[int, int]:
    info = os.stat(path)
    return info.st_dev, info.st_ino


def _listed_already(path: Path, listed: dict[tuple[int, int], Path]) -> str | None:
    """Why the folder at `path` is not listed (a loop, a second way in, unreadable), or None: it is
    recorded in `listed` and is to be walked."""
    try:
        identity = _folder_identity(path)
    except OSError as exc:
        return f"folder not read ({os_reason(exc)})"
    where = listed.get(identity)
    if where is None:
        listed[identity] = path
        return None
    if where in path.parents:
        return f"a symbolic link loop: it leads back to {where}, which holds it"
    return f"the folder {where} again (through a symbolic link); listed there once"


def scan_folder(root: str | os.PathLike, rule: LabelRule) -> tuple[list[Sample], list[tuple[str, str]]]:
    """Label every image under `root`; files the rule gives no label are returned as skipped."""
    root = Path(root)
    samples: list[Sample] = []
    unlabeled: list[tuple[str, str]] = []
    for path in find_image_files(root, unlabeled):
        label = rule.label(path.relative_to(root))
        if label is None:
            why = "no --group rule matches its folders" if rule.mode == "groups" else "not inside a label folder"
            unlabeled.append((str(path), why))
        else:
            samples.append(Sample(path, label))
    if rule.mode == "groups":
        used = Counter(s.label for s in samples)
        unused = [label for label in rule.groups if used[label] == 0]
        if unused:
            rules = "; ".join(f"{label}={','.join(rule.groups[label])}" for label in unused)
            raise DataError(f"{root}: --group rule(s) {rules} match no image")
    if rule.mode == "first":
        _check_no_empty_class_folders(root, samples, dict(unlabeled))
    return samples, unlabeled


def _check_no_empty_class_folders(root: Path, samples: Sequence[Sample], unread: Mapping[str, str]) -> None:
    # An empty class folder is almost always a copy that went wrong; training without the
    # class would silently give a model that can never predict it.
    used = {s.label for s in samples}
    if not used:
        return  # no image anywhere: check_classes says so, which is the clearer message
    folders = [d for d in sorted(root.iterdir()) if not d.name.startswith(".") and d.is_dir()]  # links too
    empty = [d.name + (f" ({unread[str(d)]})" if str(d) in unread else "") for d in folders if d.name not in used]
    if empty:
        raise DataError(f"{root}: class folder(s) with no images: {', '.join(empty)}")


def read_label_csv(path: str | os.PathLike, separator: str | None = None) -> list[Sample]:
    """A CSV with `path,label` columns (with `separator`: `path,labels`, many labels per image), every row;
    relative paths are relative to the CSV's folder (read as `csv_files.labelled_rows` reads it: a blank
    label, a file listed twice or many missing files is a DataError naming the line)."""
    return [Sample(row.file, row.label) for row in labelled_rows(Path(path), separator)]


def label_csv_splits(path: str | os.PathLike, separator: str | None = None) -> dict[str, list[Sample]]:
    """A label CSV's rows by split: {"all"}, or the splits its `split` column names ("train", "val", "test")."""
    rows = labelled_rows(Path(path), separator)
    named = {row.split for row in rows}
    if named == {""}:
        return {"all": [Sample(row.file, row.label) for row in rows]}
    if "" in named:
        line = next(i for i, row in enumerate(rows) if not row.split) + 2
        raise DataError(f"{path}:{line}: no split given; with a `split` column, every row names one")
    if "train" not in named:
        raise DataError(f"{path}: the `split` column names no `train` row")
    found: dict[str, list[Sample]] = {}
    for row in rows:
        found.setdefault(row.split, []).append(Sample(row.file, row.label))
    return found


def _split_dir(root: Path, split: str) -> Path | None:
    for name in SPLIT_NAMES[split]:
        if (root / name).is_dir():
            return root / name
    return None


def stratified_split(samples: Sequence[Sample], fraction: float, seed: int) -> tuple[list[Sample], list[Sample]]:
    """Hold out `fraction` of each class (at least one image of any class with two or more); with many
    labels per image, of each label (`label_sets.iterative_split`)."""
    if not 0.0 < fraction < 1.0:
        raise DataError(
            f"--val-split must be above 0 and below 1, got {fraction}: without a test/ folder "
            "(or from a CSV) a share of the images is held out to validate"
        )
    if samples and isinstance(samples[0].label, tuple):
        kept, held_out = iterative_split([s.label or () for s in samples], fraction, seed)
        return [samples[i] for i in kept], [samples[i] for i in held_out]
    rng = np.random.default_rng(seed)
    by_label: dict[str, list[Sample]] = {}
    for s in samples:
        by_label.setdefault(str(s.label), []).append(s)
    train, held = [], []
    for label in sorted(by_label):
        group = by_label[label]
        order = rng.permutation(len(group))
        n_held = int(round(len(group) * fraction))
        n_held = min(max(n_held, 1 if len(group) > 1 else 0), len(group) - 1)
        held += [group[i] for i in order[:n_held]]
        train += [group[i] for i in order[n_held:]]
    return train, held


@dataclass
class Splits:
    """Labelled samples of each split, the class list (from training) and files left out."""

    train: list[Sample]
    test: list[Sample]
    classes: list[str]
    unlabeled: list[tuple[str, str]]
    source: str  # "folders" (train/ and test/) or "split" (seeded stratified hold-out)
    val: list[Sample] | None = None  # validation named by a label CSV's `split` column

    def __getitem__(self, name: str) -> list[Sample]:
        return {"train": self.train, "test": self.test}[name]


def labelled_files(data: str | os.PathLike, rule: LabelRule) -> tuple[dict[str, list[Sample]], list[tuple[str, str]]]:
    """The labelled files under `data` as they lie: {"train", "test"} from train/ and test/ (or val/)
    folders, {"train"} alone, or {"all"} for one folder or a label CSV; and the unlabeled files as
    (path, reason). `find_splits` makes the splits `train` needs from this; `check` reads it as is."""
    data = Path(data)
    if not data.exists():
        raise DataError(f"{data}: path does not exist")
    found: dict[str, list[Sample]] = {}
    unlabeled: list[tuple[str, str]] = []
    if not data.is_dir():
        if data.suffix.lower() != ".csv":
            raise DataError(f"{data}: expected a folder of images or a CSV of path,label")
        found = label_csv_splits(data, rule.separator)
    elif rule.separator is not None:
        raise DataError(f"{data}: --multi-label reads a CSV of path,labels (labels joined by {rule.separator!r})")
    elif (train_dir := _split_dir(data, "train")) is not None:
        found["train"], unlabeled = scan_folder(train_dir, rule)
        if (test_dir := _split_dir(data, "test")) is not None:
            found["test"], more = scan_folder(test_dir, rule)
            unlabeled += more
    else:
        found["all"], unlabeled = scan_folder(data, rule)
    if rule.mode == "groups" and data.is_dir():
        check_group_folders(data, rule)
    check_class_names(data, {name for samples in found.values() for name in label_names(samples)})
    return found, unlabeled


def find_splits(data: str | os.PathLike, rule: LabelRule, val_split: float = 0.2, seed: int = 0) -> Splits:
    """train/ and test/ (or val/) folders under `data`, or one folder (or label CSV) split by class."""
    found, unlabeled = labelled_files(data, rule)
    if "test" in found or "val" in found:
        train, test, source = found["train"], found.get("test", []), "folders"
    else:
        samples = found.get("train", found.get("all", []))
        train, test = stratified_split(samples, val_split, seed) if samples else ([], [])
        source = "split"
    classes = sorted(label_names(train))
    check_classes(Path(data), train, test + found.get("val", []), classes)
    return Splits(train, test, classes, unlabeled, source, found.get("val"))


def check_group_folders(root: Path, rule: LabelRule) -> None:
    """Every folder a --group rule names must exist under `root` (in any split): a misspelt folder
    would otherwise only show as its images being skipped as unlabeled."""
    present = {folder.name for folder, _ in walk_folders(root) if folder != root}
    missing = [(label, name) for label, names in rule.groups.items() for name in names if name not in present]
    if missing:
        label, name = missing[0]
        close = difflib.get_close_matches(name, sorted(present), n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        others = "".join(f", {n!r} (group {lab})" for lab, n in missing[1:])
        raise DataError(
            f"{root}: group rule {label}={','.join(rule.groups[label])} names folder {name!r}, "
            f"which is nowhere under it{hint}" + (f"; also missing: {others[2:]}" if others else "")
        )


def check_class_names(data: Path, labels: set[str]) -> None:
    """Refuse two classes whose names differ only by Unicode normalisation (café composed, NFC, and
    decomposed, NFD: they print the same) or only by case (Cat, cat). Either pair would train as two
    classes that are almost always one: a spreadsheet's autocorrect, or names copied from macOS, which
    decomposes them. An error rather than a warning: macOS and Windows file names ignore both
    differences, so the two cannot even stand as folders side by side there; rename or merge them."""
    seen: dict[str, str] = {}
    for label in sorted(labels):
        composed = unicodedata.normalize("NFC", label)
        other = seen.setdefault(unicodedata.normalize("NFC", composed.casefold()), label)
        if other == label:
            continue
        if unicodedata.normalize("NFC", other) == composed:
            how = f"only by Unicode normalisation ({ascii(other)} and {ascii(label)}: they print the same)"
        else:
            how = "only by case"
        raise DataError(f"{data}: classes {other!r} and {label!r} differ {how}; rename or merge them")


def check_classes(data: Path, train: Sequence[Sample], test: Sequence[Sample], classes: Sequence[str]) -> None:
    if not train:
        raise DataError(f"{data}: no labelled images found (expected train/LABEL/... or LABEL/... folders)")
    if not classes:
        raise DataError(f"{data}: no training image has a label")
    if len(classes) < 2 and not isinstance(train[0].label, tuple):  # one label of many is present or absent
        raise DataError(f"{data}: only one class ({classes[0]!r}); a classifier needs at least two")
    if len(classes) > MAX_CLASSES:
        raise DataError(f"{data}: {len(classes):,} classes, over the limit of {MAX_CLASSES:,} for a classifier")
    unseen = sorted(label_names(test) - set(classes))
    if unseen:
        raise DataError(f"{data}: test class(es) never seen in training: {', '.join(unseen)}")
