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

from edge_search.runtime.store.catalog import Root

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


def _matches(path: str, patterns: Iterable[str]) -> bool:
    name = os.path.basename(path)
    return any(fnmatch.fnmatch(path, p) or fnmatch.fnmatch(name, p) for p in patterns)


def is_image_name(path: str) -> bool:
    return os.path.splitext(path)[1].lower() in IMAGE_SUFFIXES


def walk(roots: Iterable[Root], stop: threading.Event | None = None) -> WalkResult:
    """Image files under `roots` (following symlinks, each real directory once) and what went wrong.

    A root itself is always walked, even if its own name is hidden; the rules apply below it. Once
    `stop` is set (Ctrl-C on a large NAS share), the walk ends early and says it is incomplete.
    """
    result = WalkResult()
    visited: set[tuple[int, int]] = set()

    def visit(directory: str, skip: tuple[str, ...]) -> None:
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
            except OSError:
                is_dir = False
            if is_dir:
                visit(path, skip)
                continue
            if not is_image_name(entry.name):
                continue
            try:
                stat = os.stat(path)
            except FileNotFoundError:
                reason = "broken symlink" if entry.is_symlink() else "vanished during the walk"
                result.problems.append((path, reason))
                continue
            except OSError as exc:
                result.problems.append((path, f"cannot stat ({exc.strerror})"))
                continue
            result.files[os.path.abspath(path)] = stat

    for root in roots:
        root_path = os.path.abspath(root.path)
        skip = tuple(root.excludes) + (() if root.include_hidden else SKIPPED_BY_DEFAULT)
        if os.path.isfile(root_path):
            if is_image_name(root_path):
                result.files[root_path] = os.stat(root_path)
            else:
                result.problems.append((root_path, "not an image file name"))
        elif not os.path.exists(root_path):
            result.problems.append((root_path, "no such file or folder"))
            result.unreadable_dirs.append(root_path)
            result.missing_roots.append(root_path)
        else:
            visit(root_path, skip)
    return result
