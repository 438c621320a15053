"""A smaller copy of the data root, for a remote GPU machine that cannot read ../shared/data.

    python bench/shrink_data.py OUT_DIR [--scale 0.7] [--quality 85]
    HYBRID_DATA=OUT_DIR python train/classifier.py ...   # on the remote machine

Hands photos are scaled by `--scale` (their VOC boxes and sizes with them) and re-encoded; Sign Language
Digits images are re-encoded at the same size; Roboflow (224 px already) and every text file are copied
as they are. File names and folders stay, so the seeded train/val/test splits are the same records as
on the full data. A classifier trained at 224 px loses little: a Hands hand crop is ~400 px wide at full
size, ~280 px at 0.7. Score the result on the full data afterwards (`bench/classifier.py score DIR`).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from PIL import Image, ImageOps

from hybrid.constants import data_root

FOLDERS = {
    "hands": "subhih-handsdataset",
    "roboflow": "roboflow-hand-gesture-recognition-v6",
    "sign-digits": "sign-language-digits",
}
JPEG = {".jpg", ".jpeg", ".JPG", ".JPEG"}


def reencode(src: Path, dst: Path, scale: float, quality: int) -> float:
    """Write `src` scaled by `scale` (EXIF orientation applied) to `dst`; return the scale used per axis."""
    with Image.open(src) as image:
        image = ImageOps.exif_transpose(image).convert("RGB")
        if scale != 1.0:
            image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS)
        image.save(dst, "JPEG", quality=quality)
    return scale


def scale_voc(src: Path, dst: Path, scale: float) -> None:
    tree = ET.parse(src)
    root = tree.getroot()
    for tag in ("width", "height"):
        node = root.find(f"size/{tag}")
        if node is not None and node.text:
            node.text = str(round(float(node.text) * scale))
    for node in root.iter("bndbox"):
        for child in node:
            child.text = f"{float(child.text) * scale:.2f}"
    tree.write(dst)


def shrink(out: Path, scale: float, quality: int) -> None:
    src_root = data_root()
    for name, folder in FOLDERS.items():
        for src in sorted((src_root / folder).rglob("*")):
            if not src.is_file():
                continue
            dst = out / folder / src.relative_to(src_root / folder)
            dst.parent.mkdir(parents=True, exist_ok=True)
            if name == "hands" and src.suffix in JPEG:
                reencode(src, dst, scale, quality)
            elif name == "hands" and src.suffix == ".xml":
                scale_voc(src, dst, scale)
            elif name == "sign-digits" and src.suffix in JPEG:
                reencode(src, dst, 1.0, quality)
            else:
                shutil.copy2(src, dst)
        size = sum(p.stat().st_size for p in (out / folder).rglob("*") if p.is_file())
        print(f"{folder}: {size / 2**20:.1f} MiB")
    shutil.copy2(src_root / "SOURCES.md", out / "SOURCES.md")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False
    )
    parser.add_argument("out", type=Path)
    parser.add_argument("--scale", type=float, default=0.7)
    parser.add_argument("--quality", type=int, default=85)
    args = parser.parse_args()
    if args.out.resolve() == data_root().resolve():
        raise SystemExit("OUT_DIR must not be the data root itself")
    shrink(args.out, args.scale, args.quality)
    return 0


if __name__ == "__main__":
    sys.exit(main())
