"""Label CSVs as spreadsheets write them, `--exclude` lists (a check's duplicates.csv included), and
class folders that are symbolic links (hardening, round two).

A label CSV saved as Excel's "CSV UTF-8" (a byte-order mark) reads as any other; a blank label, a file
listed twice (under two labels or one), a run of missing files and a NUL byte each stop the read with
the file and line; classes that differ only by Unicode normalisation or case are refused naming both,
from a CSV or from folders. A class folder that is a link to a folder is followed once; a loop or a
second way into a folder is listed as skipped with the reason.
"""

from __future__ import annotations

import os
import unicodedata
from pathlib import Path

import pytest

from pixlearn.classify.audit.inspection import DUPLICATE_COLUMNS, LABEL_COLUMNS
from pixlearn.classify.data import csv_files
from pixlearn.classify.data.exclusion import excluded, listed_paths
from pixlearn.classify.data.folders import LabelRule, find_image_files, find_splits, labelled_files, read_label_csv
from pixlearn.core.errors import DataError
from pixlearn.core.storage import rundir
from tests.corpus import cli, error_line, make_class_folders
from tests.hostile import tried

TINY = ["--model", "airnet-small", "--size", "16", "--epochs", "1", "--batch-size", "4", "--device", "cpu"]
NFC, NFD = unicodedata.normalize("NFC", "café"), unicodedata.normalize("NFD", "café")


def label_csv(folder: Path, rows: list[tuple[str, str]], header: str = "path,label", bom: bool = False) -> Path:
    path = folder / "labels.csv"
    text = header + "\n" + "".join(f"{file},{label}\n" for file, label in rows)
    path.write_bytes(("\ufeff" if bom else "").encode() + text.encode("utf-8"))
    return path


def tree_rows(data: Path) -> list[tuple[str, str]]:
    return [(p.relative_to(data.parent).as_posix(), p.parent.name) for p in sorted(data.rglob("*.png"))]


# ---------------------------------------------------------------------------------- label CSVs


def test_a_byte_order_mark_is_dropped_from_the_first_column(tmp_path: Path) -> None:
    data = make_class_folders(tmp_path / "data", per_class=2)
    samples = read_label_csv(label_csv(tmp_path, tree_rows(data), bom=True))
    assert sorted({s.label for s in samples}) == ["dark", "light"] and len(samples) == 4
    spaced = read_label_csv(label_csv(tmp_path, tree_rows(data), header=" path , label", bom=True))
    assert [s.path for s in spaced] == [s.path for s in samples]
    tried("spreadsheet label CSVs", 2)


@pytest.mark.parametrize(
    ("row", "reason"), [(("data/dark/img_0.png", "  "), "empty label"), (("  ", "dark"), "empty path")]
)
def test_a_blank_cell_is_an_error_naming_the_file_and_line(tmp_path: Path, row: tuple[str, str], reason: str) -> None:
    data = make_class_folders(tmp_path / "data", per_class=2)
    path = label_csv(tmp_path, [*tree_rows(data), row])
    with pytest.raises(DataError) as caught:
        read_label_csv(path)
    assert str(caught.value) == f"{path}:6: {reason}"
    short = tmp_path / "short.csv"
    short.write_text("path,label\ndata/dark/img_0.png\n")  # the label cell missing altogether
    with pytest.raises(DataError, match="short.csv:2: empty label"):
        read_label_csv(short)
    tried("spreadsheet label CSVs", 2)


def test_a_file_listed_under_two_labels_is_refused_naming_both(tmp_path: Path) -> None:
    data = make_class_folders(tmp_path / "data", per_class=2)
    path = label_csv(tmp_path, [*tree_rows(data), ("./data/dark/../dark/img_1.png", "light")])
    with pytest.raises(DataError) as caught:
        read_label_csv(path)
    message = str(caught.value)
    assert message.startswith(f"{path}:6: './data/dark/../dark/img_1.png' is listed under two labels")
    assert "'dark' (line 3) and 'light'" in message
    again = label_csv(tmp_path, [*tree_rows(data), ("data/light/img_0.png", "light")])
    with pytest.raises(DataError, match=r"labels.csv:6: 'data/light/img_0.png' is listed again \(first on line 4\)"):
        read_label_csv(again)
    tried("spreadsheet label CSVs", 2)


def test_many_missing_files_stop_the_read_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [(f"photos/{i}.png", "cat" if i % 2 else "dog") for i in range(200_000)]  # written from another folder
    path = label_csv(tmp_path, rows)
    looked: list[Path] = []
    real = csv_files._identity
    monkeypatch.setattr(csv_files, "_identity", lambda file: looked.append(file) or real(file))
    with pytest.raises(DataError) as caught:
        read_label_csv(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: {csv_files.MISSING_LIMIT} of the files it lists do not exist by line 11")
    assert "line 2: 'photos/0.png'" in message and f"the CSV's folder, {tmp_path.resolve()}" in message
    assert len(looked) == csv_files.MISSING_LIMIT  # stopped there, not after 200,000 rows
    error_line(cli("train", path, "--out", tmp_path / "run", *TINY), str(path), "do not exist")
    assert not (tmp_path / "run" / "model.safetensors").exists()
    tried("spreadsheet label CSVs", 2)


def test_a_few_missing_files_are_skipped_by_name(tmp_path: Path) -> None:
    data = make_class_folders(tmp_path / "data", per_class=4)
    rows = [*tree_rows(data), ("data/dark/gone.png", "dark")]
    out = tmp_path / "run"
    result = cli("train", label_csv(tmp_path, rows), "--out", out, *TINY)
    assert result.exit_code == 0, result.output
    skipped = {Path(s["path"]).name: s["reason"] for s in rundir.read_json(out / "data_summary.json")["skipped"]}
    assert skipped == {"gone.png": "file not found"}


def test_nul_bytes_are_an_error_not_a_traceback(tmp_path: Path) -> None:
    data = make_class_folders(tmp_path / "data", per_class=3)
    labels = label_csv(tmp_path, [*tree_rows(data), ("data/dark/x\x00.png", "dark")])
    with pytest.raises(DataError, match=r"labels.csv:8: a NUL byte in a cell"):
        read_label_csv(labels)
    exclude = tmp_path / "exclude.csv"
    exclude.write_bytes(b"path,note\ndata/dark/img_0.png,x\ndata/da\x00rk/img_1.png,y\n")
    with pytest.raises(DataError, match=r"exclude.csv:3: a NUL byte in a cell; this is not a plain-text CSV file"):
        listed_paths(exclude)
    error_line(cli("train", data, "--exclude", exclude, "--out", tmp_path / "run", *TINY), str(exclude), "NUL byte")
    header = tmp_path / "header.csv"
    header.write_bytes(b"pa\x00th,label\n")
    with pytest.raises(DataError, match=r"header.csv:1: a NUL byte"):
        read_label_csv(header)
    tried("NUL bytes in user CSVs", 3)


@pytest.mark.parametrize(
    ("names", "how"),
    [((NFC, NFD), "only by Unicode normalisation"), (("Cat", "cat"), "only by case"), ((NFC, NFD.upper()), "case")],
)
def test_class_names_that_print_alike_are_refused_naming_both(tmp_path: Path, names: tuple[str, str], how: str) -> None:
    data = make_class_folders(tmp_path / "data", {names[0]: 40, names[1]: 210}, per_class=2)
    for source in (label_csv(tmp_path, tree_rows(data)), data):  # a label CSV, then the folder tree itself
        with pytest.raises(DataError) as caught:
            labelled_files(source, LabelRule())
        message = str(caught.value)
        assert message.startswith(f"{source}: classes ") and how in message
        assert repr(names[0]) in message and repr(names[1]) in message
    if how.startswith("only by Unicode"):
        assert ascii(NFC) in message and ascii(NFD) in message  # what tells them apart
    tried("class names that print alike", 2)


def test_distinct_names_that_only_look_related_are_kept(tmp_path: Path) -> None:
    data = make_class_folders(tmp_path / "data", {"cafe": 40, NFC: 120, "CAFÉS": 210}, per_class=2)
    found, _ = labelled_files(data, LabelRule())
    assert sorted({s.label for s in found["all"]}) == sorted(["cafe", NFC, "CAFÉS"])


# ---------------------------------------------------------------------------------- class folders that are links


def test_a_class_folder_that_is_a_symlink_is_followed(tmp_path: Path) -> None:
    data = make_class_folders(tmp_path / "data", per_class=3)
    elsewhere = make_class_folders(tmp_path / "disk2", {"grey": 120}, per_class=3)
    os.symlink(elsewhere / "grey", data / "grey")
    splits = find_splits(data, LabelRule(), val_split=0.34, seed=0)
    assert splits.classes == ["dark", "grey", "light"]
    grey = sorted(str(s.path) for s in [*splits.train, *splits.test] if s.label == "grey")
    assert grey == [str(data / "grey" / f"img_{i}.png") for i in range(3)]  # under the link's name
    assert splits.unlabeled == []
    tried("symlinked class folders")


def test_a_symlink_loop_and_a_second_way_in_are_skipped_with_the_reason(tmp_path: Path) -> None:
    data = make_class_folders(tmp_path / "data", per_class=2)
    os.symlink(data, data / "dark" / "up")  # a loop: the data folder again, from inside itself
    os.symlink(data / "light", data / "dark" / "also_light")  # a second way into a listed folder
    os.symlink(tmp_path / "nowhere", data / "dark" / "dangling")
    skipped: list[tuple[str, str]] = []
    found = find_image_files(data, skipped)
    assert sorted(p.relative_to(data).as_posix() for p in found) == [
        f"{c}/img_{i}.png" for c in ("dark", "light") for i in range(2)
    ]
    assert dict(skipped) == {
        str(data / "dark" / "up"): f"a symbolic link loop: it leads back to {data}, which holds it",
        str(
            data / "dark" / "also_light"
        ): f"the folder {data / 'light'} again (through a symbolic link); listed there once",
    }
    os.symlink(data / "dark", data / "dark_again")  # a class folder that is another class's folder
    with pytest.raises(DataError, match=r"class folder\(s\) with no images: dark_again \(the folder .*dark again"):
        labelled_files(data, LabelRule())
    tried("symlinked class folders", 3)


def test_links_inside_linked_folders_are_followed_once(tmp_path: Path) -> None:
    data = make_class_folders(tmp_path / "data", per_class=1)
    outside = make_class_folders(tmp_path / "outside", {"a": 90, "b": 150}, per_class=1)
    os.symlink(outside, data / "light" / "more")  # holds a/ and b/, and a link back to itself below
    os.symlink(outside, outside / "a" / "loop")
    skipped: list[tuple[str, str]] = []
    found = find_image_files(data, skipped)
    assert sorted(p.relative_to(data).as_posix() for p in found) == [
        "dark/img_0.png",
        "light/img_0.png",
        "light/more/a/img_0.png",
        "light/more/b/img_0.png",
    ]
    assert skipped == [
        (
            str(data / "light/more/a/loop"),
            f"a symbolic link loop: it leads back to {data / 'light/more'}, which holds it",
        )
    ]


# ---------------------------------------------------------------------------------- --exclude


def write_like_check(path: Path, columns: list[str], rows: list[list[str]]) -> Path:
    rundir.write_csv(path, columns, rows)  # the writer `pixlearn check` uses
    return path


def test_exclude_reads_a_checks_duplicates_and_drops_the_leaking_copy(tmp_path: Path) -> None:
    data = tmp_path / "data"
    make_class_folders(data / "train", per_class=4)
    make_class_folders(data / "test", per_class=2)
    test_image, train_copy = data / "test/dark/img_0.png", data / "train/dark/img_3.png"
    train_copy.write_bytes(test_image.read_bytes())  # a leak
    group = [data / "train/light/img_0.png", data / "train/light/img_1.png", data / "train/light/img_2.png"]
    for copy in group[1:]:
        copy.write_bytes(group[0].read_bytes())  # a group of three copies: two pairs, the first with each
    rows = [
        [str(test_image), str(train_copy), "exact", "1.0", "False", "test", "train"],
        [str(group[0]), str(group[1]), "exact", "1.0", "True", "train", "train"],
        [str(group[0]), str(group[2]), "exact", "1.0", "True", "train", "train"],
        [str(group[1]), str(group[2]), "near-hash", "0.98", "True", "train", "train"],  # both already out
    ]
    dups = write_like_check(tmp_path / "check" / "duplicates.csv", DUPLICATE_COLUMNS, rows)
    splits = find_splits(data, LabelRule())
    kept = excluded(splits, dups)
    gone = {Path(p) for p, reason in kept.unlabeled if reason == f"excluded: listed in {dups}"}
    assert gone == {train_copy, group[1], group[2]}
    assert len(kept.test) == len(splits.test) and test_image in {s.path for s in kept.test}  # the test split as it was
    assert group[0] in {s.path for s in kept.train}  # one of the copies stays
    tried("check CSVs given to --exclude")


def test_exclude_accepts_a_header_only_label_issues_csv(tmp_path: Path) -> None:
    data = make_class_folders(tmp_path / "data", per_class=3)
    empty = write_like_check(tmp_path / "check" / "label_issues.csv", LABEL_COLUMNS, [])
    splits = find_splits(data, LabelRule())
    assert excluded(splits, empty) == splits
    empty_dups = write_like_check(tmp_path / "check" / "duplicates.csv", DUPLICATE_COLUMNS, [])
    assert excluded(splits, empty_dups) == splits
    result = cli("train", data, "--exclude", empty, "--out", tmp_path / "run", *TINY)
    assert result.exit_code == 0, result.output
    nothing = tmp_path / "nothing.csv"
    nothing.write_text("")
    with pytest.raises(DataError, match=r"needs a path column, or path_a and path_b .*\(found no header\)"):
        excluded(splits, nothing)
    tried("check CSVs given to --exclude", 2)
