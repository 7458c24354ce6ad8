"""Rebuild export/calibration/: the photos export-model calibrates the int8-static graph on when no
--calibration-photos folder is given (or the folder holds too few).

They are scikit-image's sample photographs whose licences allow shipping them (public domain or CC0, as
skimage/data/_fetchers.py states per image; the Middlebury motorcycles and the unstated ones are left out),
scaled to at most 448 pixels on the long side and stored as JPEG (quality 92) to keep the package small.

    python tools/calibration_photos.py [SKIMAGE_DATA_DIR]

Without an argument the scikit-image wheel is downloaded from the package index (`pip download`).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "export" / "calibration"
SKIMAGE = "scikit-image==0.26.0"
LONG_SIDE = 448
# name in skimage/data -> (what it shows, licence as scikit-image records it)
PHOTOS = {
    "astronaut.png": ("astronaut Eileen Collins, NASA", "public domain (NASA)"),
    "brick.png": ("a brick wall", "CC0 (cc0textures.com)"),
    "camera.png": ("a man with a camera, greyscale", "CC0 (Lav Varshney)"),
    "cell.png": ("a cell in saline, phase image", "CC0"),
    "chelsea.png": ("Chelsea the cat", "CC0 (Stefan van der Walt)"),
    "coffee.png": ("a cup of coffee", "CC0 (Rachel Michetti)"),
    "coins.png": ("Greek coins, greyscale", "no known copyright restrictions (Brooklyn Museum)"),
    "grass.png": ("grass, greyscale", "CC0"),
    "gravel.png": ("gravel, greyscale", "CC0 (cc0textures.com)"),
    "horse.png": ("a horse silhouette", "CC0 (Andreas Preuss)"),
    "hubble_deep_field.jpg": ("the Hubble deep field", "public domain (NASA)"),
    "ihc.png": ("immunohistochemistry staining", "no known copyright restrictions (CMMI)"),
    "retina.jpg": ("a fundus photograph", "CC0 (Mikael Häggström)"),
    "rocket.jpg": ("a SpaceX rocket launch", "public domain (SpaceX)"),
    "text.png": ("text on a corner, greyscale", "public domain"),
}


def skimage_data() -> Path:
    work = Path(tempfile.mkdtemp(prefix="skimage-"))
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(work), SKIMAGE], check=True)
    (wheel,) = work.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        for name in PHOTOS:
            archive.extract(f"skimage/data/{name}", work)
    return work / "skimage" / "data"


def main() -> None:
    source = Path(sys.argv[1]) if len(sys.argv) > 1 else skimage_data()
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.glob("*.jpg"):
        old.unlink()
    lines = [
        "# Calibration photos",
        "",
        "export-model calibrates the int8-static graph on these when no `--calibration-photos` folder is given",
        f"(or it holds too few photos). From {SKIMAGE}'s `skimage/data`, scaled to {LONG_SIDE} px on the long side;",
        "rebuilt by `python tools/calibration_photos.py`.",
        "",
        "| file | shows | licence |",
        "|---|---|---|",
    ]
    for name, (shows, licence) in PHOTOS.items():
        with Image.open(source / name) as image:
            image = image.convert("RGB")
            image.thumbnail((LONG_SIDE, LONG_SIDE), Image.Resampling.LANCZOS)
            target = OUT / f"{Path(name).stem}.jpg"
            image.save(target, quality=92)
        lines.append(f"| {target.name} | {shows} | {licence} |")
    (OUT / "CREDITS.md").write_text("\n".join(lines) + "\n")
    print(f"{len(PHOTOS)} photos in {OUT}")


if __name__ == "__main__":
    main()
