"""A benchmark set of real photographs and artwork: the wallpaper packages of Debian's archive.

`python -m benchmarks --images real` gathers them once (apt-get download + dpkg -x, no root needed for
those two; `apt-get update` must have run) into benchmarks/.cache/real-photos: 131 images, JPEG / PNG /
WebP, 0.3-18 MP, RGB, greyscale and RGBA, as users have them, instead of synthetic JPEGs that flatter
the decoder.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

PACKAGES = (
    "gnome-backgrounds",
    "mate-backgrounds",
    "lomiri-wallpapers",
    "ukui-wallpapers",
    "plasma-workspace-wallpapers",
)
SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")


def real_photos(directory: Path) -> Path:
    """The folder of real images, gathered on the first call."""
    if directory.is_dir() and any(directory.iterdir()):
        return directory
    staging = Path(tempfile.mkdtemp(prefix="edge-search-photos-"))
    try:
        subprocess.run(["apt-get", "download", *PACKAGES], cwd=staging, check=True, capture_output=True)
        for deb in staging.glob("*.deb"):
            subprocess.run(["dpkg", "-x", str(deb), str(staging / "tree")], check=True)
        directory.mkdir(parents=True, exist_ok=True)
        tree = staging / "tree"
        for path in sorted(tree.rglob("*")):
            if path.is_file() and not path.is_symlink() and path.suffix.lower() in SUFFIXES:
                # unique names: many packages ship "1920x1080.jpg" in different folders
                shutil.copyfile(path, directory / "_".join(path.relative_to(tree).parts))
    except (OSError, subprocess.CalledProcessError) as exc:
        raise SystemExit(
            f"Could not gather the real-photo set ({exc}); run `apt-get update` first, "
            f"or pass --images DIR with photos of your own."
        ) from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return directory


def artwork(name: str) -> str:
    """One key per artwork: its resolutions, previews and light/dark/colour variants share it (so a search
    that returns another size of the same wallpaper is not counted as a miss, nor scored as a different photo)."""
    stem = Path(name).stem
    kde = re.match(r"usr_share_wallpapers_(.+?)_contents_", stem)
    if kde:
        return kde.group(1)
    stem = re.sub(r"_?\d{3,5}x\d{3,5}", "", stem)
    stem = re.sub(r"-[dl]$", "", stem)
    return re.sub(r"-?(Dark|Light|Cold|Warm|Radioactive)", "", stem)
