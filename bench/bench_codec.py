"""The codec against JPEG and WebP (issue 18, "A codec").

scikit-image's colour photos astronaut, coffee, chelsea and rocket, each resized so its short side is
512 (Lanczos; chelsea and coffee are smaller than 512x512) and centre-cropped to 512x512. For every
photo and rate (0.25, 0.5, 1.0 bpp): `pixlearn compress --bpp R` and `pixlearn decompress` as whole
processes (timed, start-up included), then Pillow's JPEG (4:2:0 default, optimize=True) and WebP
(method 6) at the highest quality whose file is no larger than pixlearn's, all scored by RGB PSNR and
SSIM (scikit-image, channel_axis). Targets, on average over the photos: pixlearn >= JPEG's PSNR at
1.0 bpp and within 1 dB of it at 0.5 bpp; encoding within 2 minutes per image and rate on 2 idle cores.

Writes results.json, rd.png (rate-distortion curves) and report.html into --out.

    python bench/bench_codec.py --out runs/bench-codec                     # 12 encodes
    python bench/bench_codec.py --images astronaut --rates 0.5 --steps 100  # one, quickly
    python bench/bench_codec.py --model gaussians --rates 0.5,1.0           # the gaussians field instead

Figures measured and the command used: bench/README.md.
"""

from __future__ import annotations

import argparse
import base64
import html
import io
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from common import header
from PIL import Image
from skimage import data as samples
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")
RATES = (0.25, 0.5, 1.0)
SIDE = 512


def photo(name: str) -> np.ndarray:
    image = Image.fromarray(getattr(samples, name)())
    scale = SIDE / min(image.size)
    if scale != 1:
        image = image.resize((max(SIDE, round(image.width * scale)), max(SIDE, round(image.height * scale))),
                             Image.Resampling.LANCZOS)  # fmt: skip
    left, top = (image.width - SIDE) // 2, (image.height - SIDE) // 2
    return np.asarray(image.crop((left, top, left + SIDE, top + SIDE)).convert("RGB"))


def scores(original: np.ndarray, decoded: np.ndarray) -> dict[str, float]:
    return {
        "psnr": float(peak_signal_noise_ratio(original, decoded, data_range=255)),
        "ssim": float(structural_similarity(original, decoded, channel_axis=2, data_range=255)),
    }


def classic(original: np.ndarray, fmt: str, limit: int) -> dict | None:
    """The highest quality of Pillow's `fmt` whose file is no larger than `limit` bytes."""
    options = {"JPEG": {"optimize": True}, "WEBP": {"method": 6}}[fmt]
    best = None
    for quality in range(1, 101):
        buffer = io.BytesIO()
        start = time.perf_counter()
        Image.fromarray(original).save(buffer, fmt, quality=quality, **options)
        encode_s = time.perf_counter() - start
        if buffer.tell() > limit:
            break  # size grows with quality
        best = (quality, buffer.getvalue(), encode_s)
    if best is None:
        return None
    quality, blob, encode_s = best
    start = time.perf_counter()
    decoded = np.asarray(Image.open(io.BytesIO(blob)).convert("RGB"))
    decode_s = time.perf_counter() - start
    return {"quality": quality, "bytes": len(blob), "bpp": len(blob) * 8 / original.shape[0] / original.shape[1],
            "encode_s": encode_s, "decode_s": decode_s, **scores(original, decoded)}  # fmt: skip


def pixlearn(original: np.ndarray, rate: float, work: Path, steps: int | None, model: str) -> dict:
    source, coded, out = work / "photo.png", work / "photo.pxl", work / "out.png"
    Image.fromarray(original).save(source)
    command = [sys.executable, "-m", "pixlearn", "compress", str(source), "-o", str(coded), "--bpp", str(rate)]
    command += ["--model", model]
    command += ["--steps", str(steps)] if steps is not None else []
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, timeout=3600)
    encode_s = time.perf_counter() - start
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pixlearn", "decompress", str(coded), "-o", str(out)], check=True,
                   capture_output=True, timeout=600)  # fmt: skip
    decode_s = time.perf_counter() - start
    size = coded.stat().st_size
    decoded = np.asarray(Image.open(out).convert("RGB"))
    return {"bytes": size, "bpp": size * 8 / SIDE / SIDE, "encode_s": encode_s, "decode_s": decode_s,
            **scores(original, decoded)}  # fmt: skip


def mean(rows: list[dict], codec: str, rate: float, key: str) -> float:
    values = [r[codec][key] for r in rows if r["rate"] == rate and r.get(codec)]
    return float(np.mean(values)) if values else float("nan")


def summary(rows: list[dict], rates: list[float]) -> list[str]:
    lines = [f"{'rate':>5} {'codec':9} {'bpp':>6} {'PSNR':>6} {'SSIM':>6} {'enc s':>6} {'dec s':>6}"]
    for rate in rates:
        for codec in ("pixlearn", "jpeg", "webp"):
            lines.append(f"{rate:5.2f} {codec:9} " + " ".join(
                f"{mean(rows, codec, rate, k):6.{d}f}" for k, d in
                (("bpp", 3), ("psnr", 2), ("ssim", 4), ("encode_s", 1), ("decode_s", 2))))  # fmt: skip
        gap = mean(rows, "pixlearn", rate, "psnr") - mean(rows, "jpeg", rate, "psnr")
        lines.append(f"      pixlearn - JPEG: {gap:+.2f} dB")
    return lines


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    names = sorted({r["image"] for r in rows})
    fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 3.4), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        for codec, style in (("pixlearn", "o-"), ("jpeg", "s--"), ("webp", "^:")):
            points = sorted((r[codec]["bpp"], r[codec]["psnr"]) for r in rows if r["image"] == name and r.get(codec))
            if points:
                ax.plot(*zip(*points, strict=True), style, label=codec)
        ax.set(title=name, xlabel="bits per pixel (file bytes)", ylabel="RGB PSNR (dB)")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def report(out: Path, head: str, lines: list[str]) -> None:
    image = base64.b64encode((out / "rd.png").read_bytes()).decode()
    text = html.escape(head + "\n\n" + "\n".join(lines))
    page = (f"<!doctype html><meta charset=utf-8><title>pixlearn codec benchmark</title>"
            f"<h1>pixlearn codec vs JPEG and WebP</h1><pre>{text}</pre>"
            f"<img alt='rate-distortion curves' src='data:image/png;base64,{image}'>")  # fmt: skip
    (out / "report.html").write_text(page)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", default=",".join(PHOTOS), help="comma-separated scikit-image photos")
    parser.add_argument("--rates", default=",".join(map(str, RATES)), help="comma-separated bits per pixel")
    parser.add_argument("--steps", type=int, default=None, help="fine-tuning steps [default: compress's]")
    parser.add_argument("--model", default="latent-grid", help="compress --model: latent-grid or gaussians")
    parser.add_argument("--out", type=Path, default=Path("runs/bench-codec"))
    args = parser.parse_args(argv)
    rates = [float(r) for r in args.rates.split(",")]
    args.out.mkdir(parents=True, exist_ok=True)
    head = header(f"pixlearn compress --model {args.model} vs Pillow JPEG and WebP, 512x512 crops")
    print(head, flush=True)
    rows = []
    for name in args.images.split(","):
        original = photo(name)
        for rate in rates:
            row = {"image": name, "rate": rate, "pixlearn": pixlearn(original, rate, args.out, args.steps, args.model)}
            limit = row["pixlearn"]["bytes"]
            row["jpeg"], row["webp"] = classic(original, "JPEG", limit), classic(original, "WEBP", limit)
            rows.append(row)
            print(json.dumps(row), flush=True)
    lines = summary(rows, rates)
    print("\n".join(lines))
    (args.out / "results.json").write_text(json.dumps({"header": head, "rows": rows}, indent=1))
    plot(rows, args.out / "rd.png")
    report(args.out, head, lines)
    print(f"report: {args.out / 'report.html'}")


if __name__ == "__main__":
    main()
