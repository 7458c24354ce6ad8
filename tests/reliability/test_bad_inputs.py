"""Every kind of bad input through the real CLI: good files indexed, bad ones reported with a reason."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import cli_env, cosine, edge_search, photo

pytestmark = pytest.mark.slow  # tier: CONTRIBUTING.md "The test tiers"


# Runs the command as its own child and writes that child's peak RSS (KiB) to the file descriptor it is given.
# Measured from a small launcher, not from pytest: a child forked from a large parent counts the parent's pages
# until it execs, so wait4 from a pytest holding torch reported the parent's size (4.4 GB), not the indexer's.
_PEAK_LAUNCHER = (
    "import os, resource, subprocess, sys\n"
    "code = subprocess.call(sys.argv[2:])\n"
    "os.write(int(sys.argv[1]), str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss).encode())\n"
    "sys.exit(code)\n"
)


def run_with_peak_rss(command, env):
    """(exit code, stdout, stderr, peak RSS in KiB of that command alone)."""
    read, write = os.pipe()
    proc = subprocess.Popen(
        [sys.executable, "-c", _PEAK_LAUNCHER, str(write), *command],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        pass_fds=(write,),
    )
    os.close(write)
    out, errors = proc.communicate()
    with os.fdopen(read) as peak:
        return proc.returncode, out, errors, int(peak.read())


def _save(image: Image.Image, path, fmt=None, **kw):
    image.save(path, fmt, **kw)
    return path


@pytest.fixture
def zoo(tmp_path):
    """A folder of good, odd and broken files, and what the index must say about each."""
    root = tmp_path / "zoo"
    root.mkdir()
    good = {}

    def keep(name, image, fmt=None, **kw):
        good[name] = _save(image, root / name, fmt, **kw)

    keep("plain.jpg", photo(1, 160, 120))
    keep("png-named.jpg", photo(2, 120, 90), "PNG")
    keep("cmyk.jpg", photo(3, 100, 80).convert("CMYK"), "JPEG")
    keep("deep16.png", Image.fromarray((np.linspace(0, 65535, 64 * 48).reshape(48, 64)).astype(np.uint16)))
    palette = photo(4, 90, 70).convert("P", palette=Image.Palette.ADAPTIVE)
    keep("palette-alpha.png", palette, "PNG", transparency=0)
    keep("one-bit.png", photo(5, 80, 80).convert("1"))
    frames = [photo(6 + i, 64, 64) for i in range(3)]
    buffer = root / "animated.gif"
    frames[0].save(buffer, save_all=True, append_images=frames[1:])
    good["animated.gif"] = buffer
    bad = {
        "zero.jpg": (b"", "empty file"),
        "random.jpg": (np.random.default_rng(0).bytes(5000), "not an image"),
        "text.png": (b"just some text\n" * 20, "not an image"),
        "doc.jpg": (b"%PDF-1.4\n1 0 obj<</Type/Catalog>>endobj\ntrailer<<>>\n%%EOF\n", "not an image"),
        "art.jpg": (
            b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 100 100\n0 0 moveto 100 100 lineto stroke\nshowpage\n",
            "not an image",
        ),
    }
    for name, (content, _) in bad.items():
        (root / name).write_bytes(content)
    for name, fmt in (("cut.jpg", "JPEG"), ("cut.png", "PNG")):
        data = io.BytesIO()
        photo(7, 300, 300).save(data, fmt)
        (root / name).write_bytes(data.getvalue()[: len(data.getvalue()) // 2])
        bad[name] = (None, "corrupt or truncated")
    Image.new("1", (15_000, 13_000)).save(root / "bomb.png")  # 195 MP of zeros: a few kB on disk
    bad["bomb.png"] = (None, "decompression bomb")
    os.symlink(root, root / "loop")  # a symlink loop back to the folder itself
    return root, good, bad


def test_good_files_are_indexed_and_bad_ones_reported_with_reasons(zoo, tiny_bundle, tmp_path):
    root, good, bad = zoo
    env = cli_env(tmp_path, tiny_bundle)
    returncode, out, errors, peak_kib = run_with_peak_rss(
        [sys.executable, "-m", "edge_search.runtime", "index", str(root), "--json"], env
    )
    assert returncode == 4, errors
    assert "Traceback" not in errors
    summary = json.loads(out)
    assert summary["count"] == len(good)
    reasons = {os.path.basename(f["path"]): f["reason"] for f in summary["failed"]}
    assert set(reasons) == set(bad)
    for name, (_, expected) in bad.items():
        assert expected in reasons[name], (name, reasons[name])
    assert any("symlink loop" in p["reason"] for p in summary["problems"])
    assert peak_kib < 500_000  # the 195 MP bomb was refused from its header, never decoded (decoded: ~1 GB)
    for name, path in good.items():
        hit = json.loads(edge_search("query", str(path), "--json", "-k", "1", env=env).stdout)
        assert hit["results"][0]["path"] == str(path), name


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_rotated_copies_match_their_upright_original(orientation, tiny_bundle, tmp_path):
    from edge_search.runtime.model.bundle import Bundle
    from edge_search.runtime.model.embedder import Embedder
    from edge_search.runtime.model.preprocess import Preprocessor
    from edge_search.runtime.model.session import open_session

    upright = photo(40, 200, 120)
    # How the camera stored the pixels so that applying `orientation` shows the upright image.
    stored = {
        1: upright,
        2: upright.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
        3: upright.rotate(180),
        4: upright.transpose(Image.Transpose.FLIP_TOP_BOTTOM),
        5: upright.transpose(Image.Transpose.TRANSPOSE),
        6: upright.rotate(90, expand=True),
        7: upright.transpose(Image.Transpose.TRANSVERSE),
        8: upright.rotate(-90, expand=True),
    }[orientation]
    exif = Image.Exif()
    exif[0x0112] = orientation
    stored.save(tmp_path / "rotated.jpg", quality=95, exif=exif.tobytes())
    upright.save(tmp_path / "upright.jpg", quality=95)
    bundle = Bundle.load(tiny_bundle)
    session, _ = open_session(bundle, device="cpu", precision="fp32")
    embedder = Embedder(session, Preprocessor.from_manifest(bundle.manifest))
    a, b = (r.vector for r in embedder.embed([tmp_path / "rotated.jpg", tmp_path / "upright.jpg"]))
    assert cosine(a, b)[0] >= 0.99


def test_a_file_name_that_is_not_utf8_is_stored_and_printed_without_loss(tiny_bundle, tmp_path):
    root = tmp_path / "names"
    root.mkdir()
    raw = os.fsencode(str(root)) + b"/caf\xe9-\xff.jpg"
    with open(raw, "wb") as handle:
        photo(50).save(handle, "JPEG")
    env = cli_env(tmp_path, tiny_bundle)
    assert edge_search("index", str(root), env=env).returncode == 0
    result = json.loads(edge_search("query", os.fsdecode(raw), "--json", env=env).stdout)
    assert os.fsencode(result["results"][0]["path"]) == raw  # JSON keeps the undecodable bytes as escapes
    human = edge_search("query", os.fsdecode(raw), env=env)
    assert human.returncode == 0 and "caf\\xe9-\\xff.jpg" in human.stdout


def test_unreadable_folders_and_vanished_files_are_reported_not_fatal(tmp_path, monkeypatch):
    from edge_search.runtime.jobs import walk
    from edge_search.runtime.store.catalog import Root

    root = tmp_path / "tree"
    (root / "locked").mkdir(parents=True)
    photo(1).save(root / "ok.jpg")
    photo(2).save(root / "locked" / "hidden.jpg")
    os.symlink(root / "gone.jpg", root / "dangling.jpg")
    real_scandir = os.scandir

    def scandir(path):
        if os.fspath(path).endswith("locked"):
            raise PermissionError(13, "Permission denied")
        return real_scandir(path)

    monkeypatch.setattr(walk.os, "scandir", scandir)
    found = walk.walk([Root(str(root))])
    assert list(found.files) == [str(root / "ok.jpg")]
    problems = dict(found.problems)
    assert "cannot read folder" in problems[str(root / "locked")]
    assert problems[str(root / "dangling.jpg")] == "broken symlink"
    assert found.unreadable_dirs == [str(root / "locked")]  # so its files are not pruned from the catalog


def test_a_broken_query_image_gets_a_clear_error_and_exit_4(tiny_bundle, tmp_path, photo_dir):
    env = cli_env(tmp_path, tiny_bundle)
    edge_search("index", str(photo_dir), env=env)
    (tmp_path / "q.jpg").write_bytes(b"\xff\xd8\xff\xe0 broken")
    result = edge_search("query", str(tmp_path / "q.jpg"), env=env)
    assert result.returncode == 4 and "corrupt or truncated" in result.stderr and "Traceback" not in result.stderr
    missing = edge_search("query", str(tmp_path / "nope.jpg"), env=env)
    assert missing.returncode == 4 and "file not found" in missing.stderr
