"""Files that are not what they seem (hardening, round two): every image reader decodes only an
allow-list of raster formats, whatever a file is named.

A PostScript document named photo.png is the case that matters: Pillow would hand it to Ghostscript,
which runs it as a program. Here it is refused by name and format before any plugin of another format
sees it, by the decoder (no Ghostscript needed: the EPS plugin is watched and must never be asked),
and by every command: predict lists it as skipped (no row in the CSV), train and check skip it with the
reason, fit, table and compress stop with one `error:` line. A rule keeps `Image.open` in the one
decoder, called with the allow-list, and keeps every plugin out of the rest of the package.
"""

from __future__ import annotations

import ast
import io
from pathlib import Path

import pytest
from PIL import EpsImagePlugin, Image

from pixlearn.core.errors import ImageError
from pixlearn.core.imaging import images
from pixlearn.core.imaging.images import ACCEPTED_FORMATS, decode_image
from pixlearn.core.storage import rundir
from pixlearn.field.image import load_field_image
from tests.corpus import cli, error_line, fake_run, make_class_folders
from tests.hostile import tried
from tests.test_helpers_home import PACKAGE, sources

TINY = ["--model", "airnet-small", "--size", "16", "--batch-size", "4", "--device", "cpu", "--color", "grayscale"]
ACCEPTED_NOTE = f"(accepted: {', '.join(ACCEPTED_FORMATS)})"

# A tiny Encapsulated PostScript document: what Ghostscript would run if Pillow's EPS plugin loaded it.
EPS = (
    b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\n%%EndComments\n"
    b"(/tmp/pwned) (w) file closefile\nnewpath 0 0 moveto 8 8 lineto stroke showpage\n%%EOF\n"
)
PLAIN_PS = b"%!PS-Adobe-3.0\n(/tmp/pwned) (w) file closefile showpage\n"
# DOS EPS: a binary header (C5 D0 D3 C6, then offsets) in front of the PostScript.
DOS_EPS = bytes.fromhex("c5d0d3c6") + (30).to_bytes(4, "little") + len(EPS).to_bytes(4, "little") + bytes(18) + EPS
POSTSCRIPT = {"eps": EPS, "ps": PLAIN_PS, "dos_eps": DOS_EPS}
# Formats Pillow reads that are not accepted, each saved by Pillow under an accepted name.
OTHER_FORMATS = {"ICO": "icon.png", "PCX": "scan.jpg", "JPEG2000": "photo.jpg", "SGI": "pic.tif", "DDS": "tex.webp"}


def write_eps(path: Path, data: bytes = EPS) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.fixture
def eps_watched(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every call of the EPS plugin's reader or of its Ghostscript runner, recorded (and Ghostscript
    never run): the list must stay empty."""
    calls: list[str] = []
    real_open = EpsImagePlugin.EpsImageFile._open

    def watched_open(self):  # noqa: ANN001, ANN202 - Pillow's own signature
        calls.append("EpsImageFile._open")
        return real_open(self)

    def no_ghostscript(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        calls.append("Ghostscript")
        raise OSError("Ghostscript was asked to run")

    monkeypatch.setattr(EpsImagePlugin.EpsImageFile, "_open", watched_open)
    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", no_ghostscript)
    return calls


# ---------------------------------------------------------------------------------- the decoder


@pytest.mark.parametrize("kind", sorted(POSTSCRIPT))
def test_postscript_named_photo_png_is_refused_by_format(tmp_path: Path, kind: str, eps_watched: list[str]) -> None:
    path = write_eps(tmp_path / "photo.png", POSTSCRIPT[kind])
    readers = {
        "decode_image": lambda: decode_image(path, "grayscale", (8, 8)),
        "load_field_image": lambda: load_field_image(path),
        "bytes": lambda: decode_image(path.read_bytes()),
    }
    tried("PostScript named like a raster image, per reader", len(readers))
    for name, read in readers.items():
        with pytest.raises(ImageError) as caught:
            read()
        assert caught.value.reason == f"format EPS is not accepted {ACCEPTED_NOTE}", name
    assert eps_watched == []


@pytest.mark.parametrize(("fmt", "name"), sorted(OTHER_FORMATS.items()))
def test_other_formats_pillow_reads_are_refused_naming_the_format(tmp_path: Path, fmt: str, name: str) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), "tomato").save(buffer, format=fmt)
    path = tmp_path / name
    path.write_bytes(buffer.getvalue())
    tried("other Pillow formats under a raster name")
    with pytest.raises(ImageError) as caught:
        decode_image(path)
    assert str(caught.value) == f"{path}: format {fmt} is not accepted {ACCEPTED_NOTE}"


def test_every_accepted_format_still_decodes_whatever_the_name(tmp_path: Path) -> None:
    # The allow-list is by content: a PNG saved as .jpg (or a PPM as .tif) is read as before.
    for fmt in ACCEPTED_FORMATS:
        path = tmp_path / f"{fmt}.jpg"
        Image.new("RGB", (12, 10), "tomato").save(path, format=fmt)
        arr = decode_image(path, "rgb")
        assert arr.shape == (10, 12, 3), fmt
        assert abs(int(arr[5, 5, 0]) - 255) <= 8, fmt
    assert images.accepted_formats() == tuple(ACCEPTED_FORMATS)


# ---------------------------------------------------------------------------------- every command


def _skip_reasons(entries) -> dict[str, str]:
    return {Path(e["path"]).name: e["reason"] for e in entries}


def test_predict_lists_postscript_as_skipped_and_writes_no_row(tmp_path: Path, eps_watched: list[str]) -> None:
    run = fake_run(tmp_path / "run", ["dark", "light"])
    data = make_class_folders(tmp_path / "new", per_class=2)
    eps = write_eps(data / "dark" / "photo.png")
    result = cli("predict", run, data, "--csv", tmp_path / "p.csv", "--device", "cpu")
    tried("PostScript named photo.png, per command", 1)
    assert result.exit_code == 0, result.output
    assert "format EPS is not accepted" in result.output and "photo.png" in result.output
    rows = rundir.read_csv(tmp_path / "p.csv")
    assert len(rows) == 4 and str(eps) not in {r["path"] for r in rows}
    assert eps_watched == []


def test_train_and_check_skip_postscript_with_the_reason(tmp_path: Path, eps_watched: list[str]) -> None:
    data = make_class_folders(tmp_path / "data", per_class=4)
    write_eps(data / "light" / "photo.png")
    trained = cli("train", data, "--out", tmp_path / "run", "--epochs", "1", *TINY)
    assert trained.exit_code == 0, trained.output
    summary = rundir.read_json(tmp_path / "run" / "data_summary.json")
    assert _skip_reasons(summary["skipped"])["photo.png"] == f"format EPS is not accepted {ACCEPTED_NOTE}"
    assert sum(summary["images"].values()) == 8

    checked = cli("check", data, "--out", tmp_path / "check", "--embeddings", "pixels", "--size", "32", "--folds", "2")
    assert checked.exit_code == 0, checked.output
    skipped = _skip_reasons(rundir.read_csv(tmp_path / "check" / "skipped.csv"))
    assert skipped["photo.png"] == f"format EPS is not accepted {ACCEPTED_NOTE}"
    tried("PostScript named photo.png, per command", 2)
    assert eps_watched == []


def test_fit_table_and_compress_refuse_postscript(tmp_path: Path, eps_watched: list[str]) -> None:
    eps = write_eps(tmp_path / "photo.png")
    commands = {
        "fit": ["fit", eps, "--out", tmp_path / "fit", "--steps", "1"],
        "table": ["table", eps, "--csv", tmp_path / "t.csv"],
        "compress": ["compress", eps, "-o", tmp_path / "photo.pxl", "--kb", "1"],
    }
    tried("PostScript named photo.png, per command", len(commands))
    for name, args in commands.items():
        line = error_line(cli(*args), str(eps), "format EPS is not accepted")
        assert "Ghostscript" not in line, name
    assert not (tmp_path / "fit").exists() and not (tmp_path / "t.csv").exists()
    assert not (tmp_path / "photo.pxl").exists()
    assert eps_watched == []


# ---------------------------------------------------------------------------------- the rule


DECODER = "core/imaging/images.py"
REFUSED = {"EPS", "PS", "PDF", "WMF", "EMF", "MPEG", "FITS", "HDF5", "GRIB", "BUFR"}  # hand files to other programs


def _is_image_open(node: ast.AST) -> bool:
    """`Image.open(...)` or `PIL.Image.open(...)`."""
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "open"):
        return False
    owner = ast.unparse(node.func.value)
    return owner == "Image" or owner.endswith(".Image")


def decoder_rule(root: Path = PACKAGE) -> list[str]:
    """`Image.open` only in the one decoder and only with `formats=`; no Pillow plugin (`...ImagePlugin`)
    imported or named outside it; and the decoder's allow-list free of formats that run other programs."""
    problems = []
    for path, tree in sources(root).items():
        for node in ast.walk(tree):
            if _is_image_open(node):
                if path != DECODER:
                    problems.append(f"{path}:{node.lineno}: Image.open outside {DECODER}")
                elif not any(k.arg == "formats" for k in node.keywords):  # type: ignore[attr-defined]
                    problems.append(f"{path}:{node.lineno}: Image.open without formats= (the allow-list)")
            if (
                isinstance(node, ast.ImportFrom)
                and node.module == "PIL.Image"
                and any(a.name == "open" for a in node.names)
            ):
                problems.append(f"{path}:{node.lineno}: imports Image.open by name")
            plugin = (
                (isinstance(node, ast.ImportFrom) and "ImagePlugin" in (node.module or ""))
                or (isinstance(node, ast.alias) and "ImagePlugin" in node.name)
                or (isinstance(node, ast.Constant) and isinstance(node.value, str) and "ImagePlugin" in node.value)
            )
            if plugin and path != DECODER:
                problems.append(f"{path}:{getattr(node, 'lineno', 0)}: a Pillow plugin outside {DECODER}")
    decoder = sources(root).get(DECODER)
    accepted = _accepted_names(decoder) if decoder is not None else set()
    if not accepted:
        problems.append(f"{DECODER}: no ACCEPTED_FORMATS allow-list")
    problems += [f"{DECODER}: ACCEPTED_FORMATS lets {name} through" for name in sorted(accepted & REFUSED)]
    return problems


def _accepted_names(tree: ast.Module) -> set[str]:
    for node in tree.body:
        target = node.targets[0] if isinstance(node, ast.Assign) else getattr(node, "target", None)
        if isinstance(target, ast.Name) and target.id == "ACCEPTED_FORMATS" and node.value is not None:  # type: ignore[attr-defined]
            value = ast.literal_eval(node.value)  # type: ignore[attr-defined]
            return {str(name) for name in value}
    return set()


def test_image_open_is_only_in_the_decoder_with_the_allow_list() -> None:
    assert decoder_rule() == []
    assert REFUSED.isdisjoint(ACCEPTED_FORMATS) and "PNG" in ACCEPTED_FORMATS


def test_the_rule_sees_what_it_forbids(tmp_path: Path) -> None:
    planted = {
        DECODER: "from PIL import Image\nACCEPTED_FORMATS = ('PNG', 'EPS')\ndef f(s): return Image.open(s)\n",
        "field/image.py": "import PIL.Image\ndef g(p): return PIL.Image.open(p)\n",
        "report/html.py": "from PIL import EpsImagePlugin\n",
        "report/page.py": "import importlib\nimportlib.import_module('PIL.PdfImagePlugin')\n",
        "classify/data/decoding.py": "from PIL.Image import open\n",
    }
    for path, text in planted.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text)
    found = " ".join(decoder_rule(tmp_path))
    assert "field/image.py:2: Image.open outside" in found and "without formats=" in found
    assert "report/html.py:1: a Pillow plugin outside" in found and "imports Image.open by name" in found
    assert "report/page.py:2: a Pillow plugin outside" in found and "ACCEPTED_FORMATS lets EPS through" in found
