"""Label rules, splits, decoding (resizing and colour modes) of the folder-classification job."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pixlearn.classify.data.decoding import DecodeOptions, load_images
from pixlearn.classify.data.folders import LabelRule, find_splits, parse_groups, read_label_csv, stratified_split
from pixlearn.core.errors import DataError
from pixlearn.core.imaging.images import decode_image, decode_pil
from tests.conftest import make_tree


def test_first_folder_labels_group_the_leaves_as_the_seed_does(seed_tree: Path) -> None:
    splits = find_splits(seed_tree, LabelRule("first"))
    assert splits.classes == ["city", "nature"]
    assert splits.source == "folders"
    for s in splits.train:
        assert s.label == ("city" if s.path.parent.name in ("buildings", "street") else "nature")
    assert Counter(s.label for s in splits.train) == {"city": 16, "nature": 16}
    assert Counter(s.label for s in splits.test) == {"city": 6, "nature": 6}


def test_leaf_labels_use_the_folder_holding_the_file(seed_tree: Path) -> None:
    splits = find_splits(seed_tree, LabelRule("leaf"))
    assert splits.classes == ["buildings", "forest", "sea", "street"]
    assert all(s.label == s.path.parent.name for s in splits.train + splits.test)


def test_group_rules_map_folders_to_labels(seed_tree: Path) -> None:
    groups = parse_groups(["built=buildings,street", "green=forest", "water=sea"])
    splits = find_splits(seed_tree, LabelRule("groups", groups))
    assert splits.classes == ["built", "green", "water"]
    labels = {s.path.parent.name: s.label for s in splits.train}
    assert labels == {"buildings": "built", "street": "built", "forest": "green", "sea": "water"}


def test_group_rules_that_match_nothing_or_twice_are_errors(seed_tree: Path) -> None:
    with pytest.raises(DataError, match="glacier"):
        find_splits(seed_tree, LabelRule("groups", parse_groups(["a=buildings,street,forest,sea", "b=glacier"])))
    with pytest.raises(DataError, match="more than one"):
        # "city" is a folder too, so a file in city/street matches both rules
        find_splits(seed_tree, LabelRule("groups", {"x": ("city",), "y": ("street",), "z": ("forest", "sea")}))
    with pytest.raises(DataError, match="both"):
        parse_groups(["a=forest", "b=forest"])
    with pytest.raises(DataError, match="LABEL=FOLDER"):
        parse_groups(["nonsense"])


def test_label_csv_paths_are_relative_to_the_csv(seed_tree: Path) -> None:
    rows = ["path,label"] + [f"train/city/street/img_{i}.{'png' if i % 2 == 0 else 'jpg'},city" for i in range(4)]
    rows += [f"train/nature/sea/img_{i}.{'png' if i % 2 == 0 else 'jpg'},nature" for i in range(4)]
    csv_file = seed_tree / "labels.csv"
    csv_file.write_text("\n".join(rows) + "\n")
    samples = read_label_csv(csv_file)
    assert all(s.path.exists() for s in samples)
    splits = find_splits(csv_file, LabelRule(), val_split=0.25, seed=1)
    assert Counter(s.label for s in splits.test) == {"city": 1, "nature": 1}


def test_single_folder_split_is_stratified_and_seeded(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "d", per_leaf={"all": 10})
    a = find_splits(root / "all", LabelRule("first"), val_split=0.2, seed=3)
    b = find_splits(root / "all", LabelRule("first"), val_split=0.2, seed=3)
    c = find_splits(root / "all", LabelRule("first"), val_split=0.2, seed=4)
    assert a.source == "split"
    assert [s.path for s in a.test] == [s.path for s in b.test]
    assert [s.path for s in a.test] != [s.path for s in c.test]
    assert Counter(s.label for s in a.test) == {"city": 4, "nature": 4}
    assert not {s.path for s in a.test} & {s.path for s in a.train}


def test_stratified_split_keeps_one_image_of_each_class_for_training() -> None:
    from pixlearn.classify.data.folders import Sample

    samples = [Sample(Path(f"{c}{i}"), c) for c, n in (("a", 2), ("b", 30)) for i in range(n)]
    train, held = stratified_split(samples, 0.9, seed=0)
    assert Counter(s.label for s in train)["a"] == 1
    assert Counter(s.label for s in held)["a"] == 1


def test_train_folder_without_test_folder_is_split(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "d", per_leaf={"train": 10})
    splits = find_splits(root, LabelRule("first"), val_split=0.3)
    assert splits.source == "split" and len(splits.test) == 12


@pytest.mark.parametrize("fit", ["squash", "crop", "pad"])
def test_every_image_is_resized_to_the_target(tmp_path: Path, fit: str) -> None:
    path = tmp_path / "wide.png"
    Image.fromarray(np.full((20, 60), 200, np.uint8)).save(path)
    arr = decode_image(path, "grayscale", (30, 30), fit)  # type: ignore[arg-type]
    assert arr.shape == (30, 30, 1) and arr.dtype == np.uint8
    if fit == "pad":  # a 60x20 image padded into a square keeps black bands above and below
        assert arr[0, 15, 0] == 0 and arr[15, 15, 0] == 200
    else:
        assert arr.min() == 200


def test_colour_modes(tmp_path: Path) -> None:
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[..., 0] = 255
    Image.fromarray(rgb).save(tmp_path / "red.png")
    assert decode_image(tmp_path / "red.png", "rgb").shape == (8, 8, 3)
    grey = decode_image(tmp_path / "red.png", "grayscale")
    assert grey.shape == (8, 8, 1) and int(grey[0, 0, 0]) == 76  # ITU-R 601 luma of pure red
    assert decode_image(tmp_path / "red.png", "auto").shape[2] == 3
    Image.fromarray(rgb[..., 0]).save(tmp_path / "grey.png")
    assert decode_image(tmp_path / "grey.png", "auto").shape[2] == 1


def test_unusual_modes_are_converted(tmp_path: Path) -> None:
    sixteen = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000).astype(np.uint16)
    Image.fromarray(sixteen).save(tmp_path / "deep.png")
    out = decode_image(tmp_path / "deep.png", "grayscale")[..., 0]
    assert out.max() > 200 and out[0, 0] == 0  # scaled over the 16-bit range, not clipped to 255
    Image.new("CMYK", (4, 4), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg")
    red = decode_image(tmp_path / "cmyk.jpg", "rgb")
    assert red[0, 0, 0] > 200 and red[0, 0, 1] < 60
    rgba = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    rgba.save(tmp_path / "clear.png")
    assert decode_image(tmp_path / "clear.png", "rgb").min() == 255  # transparent -> white background


def test_exif_orientation_is_honoured(tmp_path: Path) -> None:
    arr = np.zeros((10, 30), np.uint8)  # stored 30 wide, 10 high
    image = Image.fromarray(arr)
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    image.save(tmp_path / "rotated.jpg", exif=exif)
    decoded, original, _ = decode_pil(tmp_path / "rotated.jpg", "grayscale")
    assert decoded.size == (10, 30)  # PIL: (width, height), upright
    assert original == (10, 30)


def test_load_images_skips_bad_files_and_says_why(seed_tree: Path) -> None:
    bad = seed_tree / "train" / "city" / "street" / "broken.jpg"
    bad.write_bytes(b"this is not a jpeg")
    splits = find_splits(seed_tree, LabelRule("first"))
    data = load_images(splits.train, DecodeOptions("grayscale", (24, 24)), splits.classes)
    assert len(data) == 32 and data.images.shape == (32, 1, 24, 24)
    assert data.skipped == [(str(bad), "not an image file Pillow can read")]
    with pytest.raises(Exception, match="broken.jpg"):
        load_images(splits.train, DecodeOptions("grayscale", (24, 24)), splits.classes, strict=True)


def test_large_folders_decode_in_worker_processes_with_the_same_results(
    seed_tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The process pool (used from PROCESS_MIN_FILES files) gives the thread pool's arrays, order and
    skipped files; a bad file still names itself, and --strict raises for it."""
    import pixlearn.classify.data.decoding as data_module
    from pixlearn.classify.data.decoding import DecodeOptions, decode_files
    from pixlearn.core.errors import ImageError

    paths = sorted(seed_tree.rglob("*.png"))
    bad = seed_tree / "train" / "city" / "broken.png"
    bad.write_bytes(b"not a png")
    paths.insert(3, bad)
    options = DecodeOptions("grayscale", (24, 24))
    threads = decode_files(paths, options)
    monkeypatch.setattr(data_module, "PROCESS_MIN_FILES", 2)
    assert data_module._use_processes(len(paths))
    pool = data_module._decode_pool(True, None, np.empty(0))
    assert isinstance(pool, ProcessPoolExecutor)
    pool.shutdown()
    processes = decode_files(paths, options)
    assert np.array_equal(threads[0], processes[0])
    assert threads[1:] == processes[1:]
    assert processes[3] == [(str(bad), "not an image file Pillow can read")]
    with pytest.raises(ImageError, match="broken.png: not an image file"):
        decode_files(paths, options, strict=True)
