"""The one image decoder: every image pixlearn reads goes through `open_image` and `to_array`.

Both jobs share it: the folder classifier decodes thousands of files to a fixed size, and the
image-function fitter decodes one photo (from a path or an http(s) URL) at its own size.

    >>> import tempfile
    >>> from pathlib import Path
    >>> from PIL import Image
    >>> from pixlearn.core.imaging.images import decode_image
    >>> tmp = tempfile.TemporaryDirectory()
    >>> photo = Path(tmp.name) / "photo.jpg"
    >>> Image.new("RGB", (200, 120), "tomato").save(photo)
    >>> arr = decode_image(photo, color="grayscale", size=(150, 150))
    >>> arr.shape, arr.dtype
    ((150, 150, 1), dtype('uint8'))

Arrays are uint8, height x width x channels; scaling to [0, 1] happens per batch, on the fly,
so a decoded dataset costs one byte per value in memory instead of four.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import importlib
import io
import os
import stat
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from pixlearn.core.errors import ConfigError, ImageError, PixlearnError
from pixlearn.core.imaging.downloads import fetch_url
from pixlearn.core.storage.files import open_data_file

Color = Literal["grayscale", "rgb", "rgba", "auto"]
Fit = Literal["squash", "crop", "pad"]

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm"})
# The raster formats decoded, whatever a file is called (Pillow's name -> the plugin that reads it):
# the formats of IMAGE_SUFFIXES, so the decoder reads what a folder scan lists. JPEG covers a
# camera's multi-picture JPEG (MPO), which its plugin opens; PPM covers PBM, PGM and PPM. Every other
# format Pillow knows is refused before its plugin sees the file: EPS and PostScript are handed to
# Ghostscript, which runs them as programs; others (TGA, ICO, PSD, JPEG 2000, AVIF, FITS...) are
# named by no suffix pixlearn lists, some have no signature at all (Pillow tries them on any bytes),
# and each is one more parser of untrusted files for no image a user expects to be read.
ACCEPTED_FORMATS = {
    "PNG": "PngImagePlugin",
    "JPEG": "JpegImagePlugin",
    "GIF": "GifImagePlugin",
    "BMP": "BmpImagePlugin",
    "TIFF": "TiffImagePlugin",
    "WEBP": "WebPImagePlugin",
    "PPM": "PpmImagePlugin",
}
# Alpha is composited over white: a transparent logo on a page reads as dark-on-white.
BACKGROUND = (255, 255, 255)


@dataclass(frozen=True)
class ImageInfo:
    """What the seed's `dim(im)` shows: width, height, frames, channels, plus the mode."""

    width: int
    height: int
    frames: int
    channels: int
    mode: str


def is_image_file(path: str | os.PathLike) -> bool:
    """True when the file name has an image suffix (the content is checked on decoding)."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def check_pixel_limit(max_pixels: int | None) -> None:
    if max_pixels is not None and (not isinstance(max_pixels, int) or max_pixels < 1):
        raise ConfigError(f"max_pixels (--max-pixels): must be at least 1, got {max_pixels}")


@contextlib.contextmanager
def pixel_limit(max_pixels: int | None) -> Iterator[None]:
    """Run a block with Pillow's decompression-bomb limit set to `max_pixels` (None: leave it), then
    restore the caller's limit. Decoding processes forked inside the block inherit it.

    The limit stays on by default: a tiny file that declares 30000x30000 pixels is refused
    before it is decoded. Raise it only for trusted, genuinely large images.

    >>> before = Image.MAX_IMAGE_PIXELS
    >>> with pixel_limit(10_000):
    ...     Image.MAX_IMAGE_PIXELS
    10000
    >>> Image.MAX_IMAGE_PIXELS == before
    True
    """
    check_pixel_limit(max_pixels)
    previous = Image.MAX_IMAGE_PIXELS
    if max_pixels is not None:
        Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = previous


def is_url(source: str | os.PathLike) -> bool:
    return isinstance(source, str) and "://" in source[:12]


def open_image(source: str | os.PathLike | bytes, draft: tuple[str, tuple[int, int]] | None = None) -> Image.Image:
    """Open a path, an http(s) URL or raw bytes as an upright PIL image (first frame, EXIF applied).

    draft: (mode, (width, height)) lets a JPEG decode at a reduced scale no smaller than that size.
    The original stored size, upright, is kept in `image.info["pixlearn_size"]`, and the number of
    frames of the file (more than 1 for an animated GIF or a multi-page TIFF) in `image.info["pixlearn_frames"]`.
    Raises ImageError naming the source and the reason for anything that is not a readable image.
    """
    name = "<bytes>" if isinstance(source, bytes) else str(source)
    ahead = _taken_ahead(source, name) if draft is None else None  # `decode_ahead`
    return ahead if ahead is not None else _open_image(source, draft, name)


def _open_image(source: str | os.PathLike | bytes, draft: tuple[str, tuple[int, int]] | None, name: str) -> Image.Image:
    data = source if isinstance(source, bytes) else fetch_url(str(source)) if is_url(source) else None
    try:
        # We own the stream, not Pillow, so closing it leaves the loaded image intact: no copy.
        # open_data_file: a FIFO, device or socket named like an image is refused, not waited on.
        with io.BytesIO(data) if data is not None else open_data_file(source, "rb", error=ImageError) as stream:
            opened = _open_accepted(stream, name)
            _refuse_large(opened, name)
            frames = getattr(opened, "n_frames", 1)
            opened.seek(0)  # animated GIF / multi-page TIFF: the first frame (frames records that)
            stored = opened.size
            if draft is not None and opened.format == "JPEG":
                # Draft mode decodes at 1/2, 1/4 or 1/8 scale straight from the DCT coefficients:
                # several times faster when the target is much smaller, never below the target.
                opened.draft(*draft)
            opened.load()
            image = opened
            orientation = opened.getexif().get(_ORIENTATION, 1)
            if orientation != 1:
                image = ImageOps.exif_transpose(opened)
                if orientation in _QUARTER_TURNS:
                    stored = stored[::-1]
        image.info["pixlearn_size"] = stored
        image.info["pixlearn_frames"] = frames
        return image
    except ImageError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageError(name, f"refused as a possible decompression bomb ({exc})") from exc
    except UnidentifiedImageError as exc:
        raise ImageError(name, "not an image file Pillow can read") from exc
    except FileNotFoundError as exc:
        raise ImageError(name, "file not found") from exc
    except PermissionError as exc:
        raise ImageError(name, "permission denied") from exc
    except IsADirectoryError as exc:
        raise ImageError(name, "is a directory") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        if getattr(exc, "errno", None) == errno.ELOOP:
            raise ImageError(name, "a symbolic link that points to itself (symlink loop)") from exc
        # Pillow reports truncated or corrupt data as OSError/SyntaxError/ValueError.
        raise ImageError(name, f"corrupt or truncated image ({exc})") from exc
    except Exception as exc:  # noqa: BLE001 - a fuzzed file can make a Pillow plugin fail any way
        raise _undecodable(name, exc) from exc


def _open_accepted(stream: IO[bytes], name: str) -> Image.Image:
    """Pillow's lazy image of `stream`, tried as the accepted formats only; a file in another format
    Pillow knows is the ImageError naming that format (its plugin never sees the file)."""
    try:
        return Image.open(stream, formats=accepted_formats())
    except UnidentifiedImageError:
        stream.seek(0)
        other = _signature_format(stream.read(_PREFIX))
        if other is None:
            raise
        accepted = ", ".join(ACCEPTED_FORMATS)
        raise ImageError(name, f"format {other} is not accepted (accepted: {accepted})") from None


@functools.cache
def accepted_formats() -> tuple[str, ...]:
    """The accepted formats this Pillow reads. Their plugins are imported here, so `Image.open`
    never imports every plugin to look for a format missing from its table."""
    for plugin in ACCEPTED_FORMATS.values():
        with contextlib.suppress(ImportError):  # a Pillow built without one: that format is not read
            importlib.import_module(f"PIL.{plugin}")
    return tuple(name for name in ACCEPTED_FORMATS if name in Image.OPEN)


_PREFIX = 16  # bytes Pillow's signature checks look at (what Image.open reads before trying a plugin)


def _signature_format(prefix: bytes) -> str | None:
    """The format another Pillow plugin recognises by its signature in `prefix`, or None. Only the
    signature checks run (never a plugin's reader); formats without one are not guessed at."""
    Image.init()  # every plugin's signature check, imported (importing one reads no file)
    for name, (_, accept) in Image.OPEN.items():
        if name in ACCEPTED_FORMATS or accept is None:
            continue
        try:
            matched = accept(prefix)
        except Exception:  # noqa: BLE001, S112 - a check that fails on a short prefix recognises nothing
            continue
        if matched and not isinstance(matched, str):  # a string: Pillow's note that it cannot read it
            return name
    return None


def _undecodable(name: str, exc: Exception) -> ImageError:
    # e.g. a truncated GIF: IndexError from the GIF plugin. The type and message stay in the reason.
    return ImageError(name, f"corrupt or truncated image ({type(exc).__name__}: {exc})")


@contextlib.contextmanager
def decoding(source: str | os.PathLike | bytes) -> Iterator[None]:
    """Turn any failure of Pillow inside the block (converting, resizing a decoded image) into the
    ImageError naming `source`; pixlearn's own errors pass through unchanged."""
    try:
        yield
    except PixlearnError:
        raise
    except Exception as exc:  # noqa: BLE001 - re-raised as ImageError with its type and message
        raise _undecodable("<bytes>" if isinstance(source, bytes) else str(source), exc) from exc


def _refuse_large(image: Image.Image, name: str) -> None:
    # Pillow raises only above twice MAX_IMAGE_PIXELS and merely warns in between; a warning
    # scrolls past unnoticed, so anything over the limit is refused here. Checking the size
    # ourselves (not turning the warning into an error) is safe with the decoding threads,
    # whose warning filters are shared by the whole process.
    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and image.width * image.height > limit:
        raise ImageError(
            name,
            f"refused as a possible decompression bomb: {image.width}x{image.height} pixels is over the "
            f"{limit:,}-pixel limit (raise it with --max-pixels for trusted images)",
        )


# ---------------------------------------------------------------------------------- decoding ahead


def decode_ahead(path: str | os.PathLike) -> bool:
    """Start `open_image(path)` on a thread; the next `open_image(path)` (without a draft) takes
    its image, if the file is still the one it read. For a command that knows its image before it
    has imported torch (`pixlearn fit IMAGE`): the decoding, which Pillow does without the GIL, runs on
    another core beside the imports
    (bench/README.md, "Start-up: imports, the collector and the early decode"). Returns whether it
    started: only a regular file named like an image (a FIFO is never opened here).

    >>> decode_ahead("no-such-photo.png")
    False
    """
    identity = _identity(path)
    if identity is None or not is_image_file(path):
        return False
    ahead = _Ahead(os.fspath(path), identity)
    _AHEAD[ahead.path] = ahead
    ahead.thread.start()
    return True


class _Ahead:
    """One file opened on a thread, and the file's identity when it began."""

    def __init__(self, path: str, identity: tuple[int, ...]):
        self.path, self.identity = path, identity
        self.image: Image.Image | None = None
        self.thread = threading.Thread(target=self._open, name="pixlearn-decode-ahead", daemon=True)

    def _open(self) -> None:
        try:
            self.image = _open_image(self.path, None, self.path)
        except Exception:  # noqa: BLE001, S110 - not lost: open_image decodes the file again and raises it
            self.image = None


_AHEAD: dict[str, _Ahead] = {}


def _taken_ahead(source: str | os.PathLike | bytes, name: str) -> Image.Image | None:
    if isinstance(source, bytes) or is_url(source):
        return None
    ahead = _AHEAD.pop(os.fspath(source), None)
    if ahead is None:
        return None
    ahead.thread.join()
    if ahead.image is None or _identity(source) != ahead.identity:  # failed, or the file changed since
        return None
    _refuse_large(ahead.image, name)  # the limit in force now (--max-pixels), not at the command's start
    return ahead.image


def _identity(path: str | os.PathLike) -> tuple[int, ...] | None:
    """A regular file's (device, inode, size, mtime_ns); None for anything else or a failed stat."""
    try:
        info = os.stat(path)
    except (OSError, ValueError):
        return None
    if not stat.S_ISREG(info.st_mode):
        return None
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)


_ORIENTATION = 0x0112
_QUARTER_TURNS = (5, 6, 7, 8)  # EXIF orientations that swap width and height


def image_info(image: Image.Image) -> ImageInfo:
    return ImageInfo(
        width=image.width,
        height=image.height,
        frames=image.info.get("pixlearn_frames", getattr(image, "n_frames", 1)),
        channels=len(image.getbands()),
        mode=image.mode,
    )


def _sixteen_bit_to_8(image: Image.Image) -> Image.Image:
    # Pillow's I;16 -> L conversion clips instead of scaling; scale the full 16-bit range.
    arr = np.asarray(image, dtype=np.uint32 if image.mode == "I" else np.uint16).astype(np.float64)
    top = 65535.0 if arr.max(initial=0) > 255 else 255.0
    return Image.fromarray(np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8), mode="L")


def _flatten_alpha(image: Image.Image) -> Image.Image:
    rgba = image.convert("RGBA")
    canvas = Image.new("RGBA", rgba.size, BACKGROUND + (255,))
    return Image.alpha_composite(canvas, rgba).convert("RGB")


def normalize_mode(image: Image.Image, color: Color) -> Image.Image:
    """Convert any Pillow mode (palette, 16-bit, CMYK, LA/RGBA, 1-bit, float) to L, RGB or RGBA.

    `auto` keeps grayscale images grey and everything else RGB.
    """
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        image = _sixteen_bit_to_8(image)
    elif image.mode == "F":
        image = Image.fromarray(np.clip(np.asarray(image), 0, 255).astype(np.uint8), mode="L")
    has_alpha = image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info)
    if color == "rgba":
        return image.convert("RGBA")
    if color == "auto":
        # Decided before flattening: grey with alpha (LA) stays grey, as resolve_color treats it.
        color = "grayscale" if image.mode in ("1", "L", "LA") else "rgb"
    if has_alpha:
        image = _flatten_alpha(image)
    if color == "grayscale":
        return image.convert("L")
    return image.convert("RGB")  # CMYK, YCbCr, P and L all have exact conversions to RGB


def resize(image: Image.Image, size: tuple[int, int], fit: Fit = "squash") -> Image.Image:
    """Resize to (height, width): squash (ignore aspect, Keras' default), crop (centre), or pad."""
    height, width = size
    if image.size == (width, height):
        return image
    if fit == "squash":
        return image.resize((width, height), Image.Resampling.BILINEAR, reducing_gap=2.0)
    if fit == "crop":
        return ImageOps.fit(image, (width, height), Image.Resampling.BILINEAR)
    if fit == "pad":
        fill = 0 if image.mode == "L" else (0,) * len(image.getbands())
        return ImageOps.pad(image, (width, height), Image.Resampling.BILINEAR, color=fill)
    raise ConfigError(f"unknown fit {fit!r}; choose one of squash, crop, pad")


def decode_image(
    source: str | os.PathLike | bytes,
    color: Color = "auto",
    size: tuple[int, int] | None = None,
    fit: Fit = "squash",
) -> np.ndarray:
    """Decode one image to a uint8 array of shape (height, width, channels).

    color: grayscale (1 channel), rgb (3), rgba (4) or auto (1 for grey images, else 3).
    size: (height, width) to resize to, or None to keep the original size.

    >>> decode_image(b"not an image")
    Traceback (most recent call last):
    ...
    pixlearn.core.errors.ImageError: <bytes>: not an image file Pillow can read
    """
    image = decode_pil(source, color, size, fit)[0]
    with decoding(source):
        arr = np.array(image, dtype=np.uint8)  # writable: torch.from_numpy needs it
    return arr[:, :, None] if arr.ndim == 2 else arr


def decode_pil(
    source: str | os.PathLike | bytes,
    color: Color = "auto",
    size: tuple[int, int] | None = None,
    fit: Fit = "squash",
) -> tuple[Image.Image, tuple[int, int], int]:
    """decode_image's PIL image (mode L, RGB or RGBA, resized), with the file's original upright
    (width, height) for data summaries and its frame count (only the first frame is decoded)."""
    draft = None
    if size is not None:
        if min(size) < 1:
            raise ConfigError(f"target size must be positive, got {size}")
        # A square request: EXIF may still turn the image a quarter, so ask for the larger side.
        draft = ("L" if color == "grayscale" else "RGB", (max(size), max(size)))
    image = open_image(source, draft=draft)
    original = image.info["pixlearn_size"]
    frames = image.info["pixlearn_frames"]
    with decoding(source):
        image = normalize_mode(image, color)
        if size is not None:
            image = resize(image, size, fit)
    return image, original, frames


def to_pil(arr: np.ndarray) -> Image.Image:
    """A (H, W, C) or (H, W) uint8 or [0, 1] float array as a PIL image, for figures and saving."""
    if arr.dtype != np.uint8:
        arr = np.clip(np.asarray(arr, dtype=np.float64) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    return Image.fromarray(arr)
