"""Which files under the roots are photos to index: the folder walk and what it skips by default.

Skipped unless `include_hidden`: hidden files and folders (a leading dot), and the thumbnail caches,
recycle bins and system folders that NAS boxes, desktops and tools put beside photos (Synology
`@eaDir`, `#recycle`, QNAP `.@__thumb`, `System Volume Information`, `.git`, `node_modules`, ...),
whose images are copies or not photos at all.
"""

from __future__ import annotations

import fnmatch
import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

from edge_search.runtime.files import not_regular
from edge_search.runtime.model.video import is_video_name
from edge_search.runtime.store.catalog import Root

# Why a symlink leading out is skipped (the index summary counts these: cli/render.py)
LEADS_OUT = "outside the indexed folders"
IMAGE_SUFFIXES = frozenset(
    {
        ".jpg",
        ".jpeg",
        ".jpe",
        ".jfif",
        ".png",
        ".webp",
        ".bmp",
        ".dib",
        ".gif",
        ".tif",
        ".tiff",
        ".heic",
        ".heif",
        ".avif",
    }
)
SKIPPED_BY_DEFAULT = (
    ".*",  # hidden: .thumbnails, .git, .Trash-1000, .DS_Store, ._AppleDouble files ...
    "@eaDir",
    "#recycle",
    "#snapshot",
    "@Recycle",
    "@Recently-Snapshot",
    "$RECYCLE.BIN",
    "System Volume Information",
    "node_modules",
    "__MACOSX",
    "lost+found",
)


@dataclass
class WalkResult:
    files: dict[str, os.stat_result] = field(default_factory=dict)
    problems: list[tuple[str, str]] = field(default_factory=list)
    unreadable_dirs: list[str] = field(default_factory=list)
    missing_roots: list[str] = field(default_factory=list)
    complete: bool = True  # False when `stop` cut the walk short: what is not listed may still exist
    videos_skipped: int = 0  # video files left out: videos were not asked for (PyAV is not installed)


def _matches(path: str, patterns: Iterable[str]) -> bool:
    name = os.path.basename(path)
    return any(fnmatch.fnmatch(path, p) or fnmatch.fnmatch(name, p) for p in patterns)


def is_image_name(path: str) -> bool:
    return os.path.splitext(path)[1].lower() in IMAGE_SUFFIXES


def inside_any(real: str, real_roots: Iterable[str]) -> bool:
    """Whether the resolved path `real` is one of `real_roots` or inside one of them."""
    return any(real == r or real.startswith(r.rstrip(os.sep) + os.sep) for r in real_roots)


def walk(roots: Iterable[Root], stop: threading.Event | None = None, *, videos: bool = False) -> WalkResult:
    """Image files under `roots` (and video files, with `videos`; else they are counted) and what went wrong.

    Symlinks are followed (each real directory once) as long as they stay inside the indexed folders; one that
    leads out of all of them (to /etc, another share) is skipped and reported, unless its root was indexed with
    `follow_links`. Only regular files are listed: a FIFO, device or socket with an image's name is a problem,
    never opened. A root itself is always walked, even if its own name is hidden; the rules apply below it. Once
    `stop` is set (Ctrl-C on a large NAS share), the walk ends early and says it is incomplete.
    """
    result = WalkResult()
    visited: set[tuple[int, int]] = set()
    roots = list(roots)
    real_roots = [os.path.realpath(r.path) for r in roots]

    def leaves(path: str, follow: bool) -> str | None:
        """Why the symlink at `path` is not followed (None: it stays inside the indexed folders, or may leave)."""
        if follow:
            return None
        real = os.path.realpath(path)
        if inside_any(real, real_roots):
            return None
        return f"symlink to {real}, {LEADS_OUT} (index with --follow-links to include it)"

    def visit(directory: str, skip: tuple[str, ...], follow: bool) -> None:
        if stop is not None and stop.is_set():
            result.complete = False
            return
        try:
            st = os.stat(directory)
        except OSError as exc:
            result.problems.append((directory, f"cannot open folder ({exc.strerror})"))
            result.unreadable_dirs.append(directory)
            return
        ident = (st.st_dev, st.st_ino)
        if ident in visited:
            result.problems.append((directory, "symlink loop or repeated folder, skipped"))
            return
        visited.add(ident)
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError as exc:
            result.problems.append((directory, f"cannot read folder ({exc.strerror})"))
            result.unreadable_dirs.append(directory)
            return
        for entry in entries:
            path = entry.path
            if _matches(path, skip):
                continue
            try:
                is_dir = entry.is_dir(follow_symlinks=True)
                is_link = entry.is_symlink()
            except OSError:
                is_dir, is_link = False, False
            if is_dir:
                outside = leaves(path, follow) if is_link else None
                if outside:
                    result.problems.append((path, outside))
                else:
                    visit(path, skip, follow)
                continue
            if is_video_name(entry.name) and not videos:
                result.videos_skipped += 1
                continue
            if not (is_image_name(entry.name) or is_video_name(entry.name)):
                continue
            _add_file(result, path, leaves(path, follow) if is_link else None, is_link)

    for root in roots:
        root_path = os.path.abspath(root.path)
        skip = tuple(root.excludes) + (() if root.include_hidden else SKIPPED_BY_DEFAULT)
        if not os.path.exists(root_path):
            result.problems.append((root_path, "no such file or folder"))
            result.unreadable_dirs.append(root_path)
            result.missing_roots.append(root_path)
        elif os.path.isdir(root_path):
            visit(root_path, skip, root.follow_links)
        elif is_image_name(root_path) or (videos and is_video_name(root_path)):
            _add_file(result, root_path, None, os.path.islink(root_path))
        else:
            result.problems.append((root_path, "not an image file name"))
    return result


def _add_file(result: WalkResult, path: str, outside: str | None, is_link: bool) -> None:
    """List `path` if it is a regular file (after following links) that may be indexed, else say why not."""
    if outside:
        result.problems.append((path, outside))
        return
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        result.problems.append((path, "broken symlink" if is_link else "vanished during the walk"))
        return
    except OSError as exc:
        result.problems.append((path, f"cannot stat ({exc.strerror})"))
        return
    reason = not_regular(stat.st_mode)
    if reason:
        result.problems.append((path, reason))
        return
    result.files[os.path.abspath(path)] = stat
