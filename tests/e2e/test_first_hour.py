"""What a new user meets in the first hour, through the installed `edge-search` script."""

from __future__ import annotations

import importlib.util
import json
import os
import pty
import select
import signal
import subprocess
import sys
import time

import onnxruntime
import pytest
from PIL import Image, ImageFont

from conftest import cli_env, console_script, photo, run_script

pytestmark = pytest.mark.slow  # tier: CONTRIBUTING.md "The test tiers"


@pytest.fixture
def env(tmp_path, tiny_bundle):
    return cli_env(tmp_path, tiny_bundle)


@pytest.fixture(scope="module")
def many(tmp_path_factory):
    """300 PNGs (no draft decoding for PNG): slow enough with one thread to be stopped half way. Twelve pictures,
    each file made distinct by a text chunk (identical files are embedded once)."""
    from PIL import PngImagePlugin

    root = tmp_path_factory.mktemp("many")
    pictures = [photo(7000 + i, 640, 480) for i in range(12)]
    for i in range(300):
        info = PngImagePlugin.PngInfo()
        info.add_text("file", str(i))
        pictures[i % 12].save(root / f"{i:03d}.png", pnginfo=info)
    return root


def committed(catalog) -> int:
    import sqlite3

    if not catalog.exists():
        return 0
    try:
        with sqlite3.connect(catalog) as db:
            return db.execute("SELECT count(*) FROM files").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def index_then_signal(many, env, catalog, signum, *extra):
    """Start indexing, send `signum` once the first commit landed, return (exit status, stdout, stderr)."""
    proc = subprocess.Popen(
        [console_script("edge-search"), "index", str(many), *extra],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and committed(catalog) == 0 and proc.poll() is None:
            time.sleep(0.02)
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, out, err


def test_ctrl_c_commits_what_was_embedded_says_so_and_a_rerun_resumes(many, tiny_bundle, tmp_path):
    env = cli_env(tmp_path, tiny_bundle, EDGE_SEARCH_BATCH_SIZE="1", EDGE_SEARCH_THREADS="1")
    returncode, _, err = index_then_signal(many, env, tmp_path / "index" / "catalog.sqlite", signal.SIGINT)
    assert returncode == 130, err
    assert "Traceback" not in err and "Run the same command to resume" in err
    kept = json.loads(run_script("edge-search", "info", "--json", env=env).stdout)
    assert 0 < kept["count"] < 300 and kept["index_count"] == kept["count"]  # committed and published
    rerun = json.loads(run_script("edge-search", "index", str(many), "--json", env=env).stdout)
    assert (rerun["unchanged"], rerun["added"], rerun["count"]) == (kept["count"], 300 - kept["count"], 300)


def test_sigterm_also_commits_and_exits_130(many, tiny_bundle, tmp_path):
    env = cli_env(tmp_path, tiny_bundle, EDGE_SEARCH_BATCH_SIZE="1", EDGE_SEARCH_THREADS="1")
    returncode, out, _ = index_then_signal(many, env, tmp_path / "index" / "catalog.sqlite", signal.SIGTERM, "--json")
    assert returncode == 130
    report = json.loads(out)
    assert report["interrupted"] and report["pending"] > 0 and report["count"] + report["pending"] == 300


def test_progress_advances_per_file_with_rate_eta_and_the_current_file_on_a_terminal(many, tiny_bundle, tmp_path):
    env = cli_env(tmp_path, tiny_bundle, EDGE_SEARCH_BATCH_SIZE="1", EDGE_SEARCH_THREADS="1", COLUMNS="200")
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [console_script("edge-search"), "index", str(many)], env=env, stdin=follower, stdout=follower, stderr=follower
    )
    os.close(follower)
    screen = b""
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(leader, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                screen += chunk
            elif proc.poll() is not None:
                break
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(leader)
    text = screen.decode("utf-8", "replace")
    assert proc.returncode == 0, text
    counts = {int(n) for n in __import__("re").findall(r"(\d+)/300", text)}
    assert any(0 < n < 32 for n in counts), sorted(counts)[:10]  # moves before the first commit of 32
    assert "img/s" in text and "ETA" in text and ".png" in text


def test_nothing_on_stdout_but_the_summary_when_piped(photo_dir, env):
    result = run_script("edge-search", "index", str(photo_dir), env=env)
    assert result.returncode == 0 and result.stdout.count("\n") == 1 and "added 12" in result.stdout
    assert "\r" not in result.stderr


@pytest.mark.skipif(
    "CUDAExecutionProvider" not in onnxruntime.get_available_providers(),
    reason="only an onnxruntime with a CUDA provider prints the note",
)
def test_the_cuda_note_is_shown_once_per_index_and_says_how_to_silence_it(photo_dir, tiny_bundle, tmp_path):
    env = {**cli_env(tmp_path, tiny_bundle), "CUDA_VISIBLE_DEVICES": ""}
    env.pop("EDGE_SEARCH_DEVICE")
    first = run_script("edge-search", "index", str(photo_dir), env=env)
    assert first.returncode == 0 and first.stderr.count("CUDA") >= 1 and "EDGE_SEARCH_DEVICE=cpu" in first.stderr
    new = tmp_path / "new.jpg"  # not in the index: the model runs (a photo of the index would need none)
    photo(4242).save(new)
    query = run_script("edge-search", "query", str(new), env=env)
    assert query.returncode == 0 and "CUDA" not in query.stderr
    verbose = run_script("edge-search", "query", str(new), "-v", env=env)
    assert "CUDA" in verbose.stderr


def test_query_conveniences_paths_only_stdin_under_exclude_self(photo_dir, env):
    assert run_script("edge-search", "index", str(photo_dir), env=env).returncode == 0
    target = photo_dir / "img01.png"
    paths = run_script("edge-search", "query", str(target), "-f", "-k", "3", env=env)
    assert paths.returncode == 0 and paths.stdout.splitlines()[0] == str(target) and len(paths.stdout.splitlines()) == 3
    piped = subprocess.run(
        [console_script("edge-search"), "query", "-", "-f", "-k", "1", "--exclude-self"],
        env=env,
        input=target.read_bytes(),
        capture_output=True,
        timeout=300,
    )
    assert piped.returncode == 0 and piped.stdout.decode().strip() not in ("", str(target))
    inside = run_script("edge-search", "query", str(target), "--under", str(photo_dir / "sub"), "--json", env=env)
    results = json.loads(inside.stdout)["results"]
    assert len(results) == 3 and all(r["path"].startswith(str(photo_dir / "sub") + "/") for r in results)
    two = run_script("edge-search", "query", str(target), str(photo_dir / "img02.webp"), "--json", "-k", "2", env=env)
    answer = json.loads(two.stdout)  # what averaging finds is the library's test; here: the CLI takes both
    assert (
        two.returncode == 0
        and answer["query"] == [str(target), str(photo_dir / "img02.webp")]
        and len(answer["results"]) == 2
    )


def test_index_with_no_folder_updates_the_remembered_ones_and_a_missing_root_exits_2(photo_dir, env, tmp_path):
    nothing = run_script("edge-search", "index", env=env)
    assert nothing.returncode == 2 and "Name a folder" in nothing.stderr and not (tmp_path / "index").exists()
    missing = run_script("edge-search", "index", str(tmp_path / "nowhere"), env=env)
    assert missing.returncode == 2 and str(tmp_path / "nowhere") in missing.stderr and not (tmp_path / "index").exists()
    some = run_script("edge-search", "index", str(tmp_path / "nowhere"), str(photo_dir), "--json", env=env)
    assert some.returncode == 2 and json.loads(some.stdout)["count"] == 12 and "nowhere" in some.stderr
    photo(99).save(photo_dir / "new.jpg")
    cron = run_script("edge-search", "index", "--json", env=env)
    assert cron.returncode == 0 and json.loads(cron.stdout)["added"] == 1
    forget = run_script("edge-search", "remove", str(photo_dir), env=env)
    assert forget.returncode == 0 and "forgot the root" in forget.stderr


def test_info_failed_lists_what_could_not_be_read(photo_dir, env):
    (photo_dir / "empty.jpg").write_bytes(b"")
    assert run_script("edge-search", "index", str(photo_dir), env=env).returncode == 4
    listed = run_script("edge-search", "info", "--failed", env=env)
    assert listed.returncode == 0 and listed.stdout == f"{photo_dir / 'empty.jpg'}\tempty file\n"


def test_verify_reports_on_stdout_cuda_is_information_and_no_index_is_exit_6(photo_dir, env):
    none = run_script("edge-search", "verify", env=env)
    assert none.returncode == 6 and "edge-search index" in none.stderr
    run_script("edge-search", "index", str(photo_dir), env=env)
    report = run_script("edge-search", "verify", env=env)
    assert report.returncode == 0, report.stdout
    lines = report.stdout.splitlines()
    assert any(line.startswith("ok") and "bundle fp32" in line for line in lines)
    cuda = [line for line in lines if "provider cuda" in line]
    assert cuda and cuda[0].startswith("info")  # no GPU here: a fact, not a pass and not a failure
    openvino = [line for line in lines if "provider openvino" in line]  # starts (installed) or is absent (info)
    assert openvino and openvino[0].split()[0] == ("ok" if importlib.util.find_spec("openvino") else "info")


def test_a_heic_photo_without_the_heic_extra_names_the_extra(tiny_bundle, tmp_path):
    pillow_heif = pytest.importorskip("pillow_heif")
    heic = tmp_path / "phone.heic"
    pillow_heif.from_pillow(photo(3)).save(heic)
    blocker = (
        "import sys\nclass Block:\n    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'pillow_heif': raise ImportError('blocked')\n"
        "sys.meta_path.insert(0, Block())\nsys.argv = ['edge-search'] + sys.argv[1:]\n"
        "from edge_search.runtime.cli import main\nmain()\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", blocker, "embed", str(heic)],
        env=cli_env(tmp_path, tiny_bundle),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 4 and "edge-search[heic]" in result.stderr


def test_export_model_on_a_search_only_install_names_the_extra(tmp_path):
    blocker = (
        "import sys\nclass Block:\n    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('torch', 'transformers', 'optimum', 'onnx'):\n"
        "            e = ImportError('No module named ' + name); e.name = name; raise e\n"
        "sys.meta_path.insert(0, Block())\nsys.argv = ['export-model'] + sys.argv[1:]\n"
        "from edge_search.export.cli import main\nmain()\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", blocker, "--out", str(tmp_path / "b")], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 2 and "edge-search[export]" in result.stderr and "Traceback" not in result.stderr


def test_the_montage_names_files_marks_missing_ones_and_shows_transparency(tmp_path):
    from edge_search.runtime.jobs.montage import (
        HEADER_H,
        PAD,
        TILE,
        hit_label,
        write_montage,
    )
    from edge_search.runtime.store.generations import Hit

    clear = tmp_path / "clear.png"
    Image.new("RGBA", (64, 64), (255, 0, 0, 0)).save(clear)
    query = tmp_path / "query.jpg"
    photo(5).save(query)
    hits = [Hit(1, 0.99963, str(clear), 1), Hit(2, 0.5, str(tmp_path / "gone.jpg"), 2)]
    out = write_montage([str(query)], [query], hits, tmp_path / "sheet.png")
    assert hit_label(hits[0]) == "#1  0.9996"
    with Image.open(out) as sheet:
        y = HEADER_H + PAD
        clear_tile = [sheet.getpixel((PAD + (TILE + PAD) + dx, y + 2)) for dx in (2, 14)]
        assert {clear_tile[0], clear_tile[1]} == {(204, 204, 204), (153, 153, 153)}  # a checkerboard
        assert sheet.getpixel((PAD + 2 * (TILE + PAD) + 2, y + 2)) == (70, 30, 30)  # the missing file's tile
        assert any(sheet.getpixel((x, PAD + 8)) != (18, 18, 18) for x in range(PAD, 300))  # a header was drawn


def test_a_contact_sheet_draws_accented_names_with_their_letters_not_empty_boxes(tmp_path):
    from edge_search.runtime.jobs.fonts import BUNDLED, font_file, font_for

    def drawn(text: str, font) -> bytes:
        return bytes(font.getmask(text))

    name = "Café Noël Ωμέγα"
    font = font_for(name, 18)
    missing = "\U000f0000"  # a private-use character no font draws: its box is what a missing letter looks like
    for letter in "éëΩμέ":
        assert drawn(letter, font) != drawn(missing, font), letter
    assert BUNDLED.is_file() and (BUNDLED.parent / "LICENSE.txt").is_file()
    assert font_file(frozenset(name)).suffix.lower() in (".ttf", ".otf", ".ttc")
    bundled = ImageFont.truetype(str(BUNDLED), 18)  # what a system without fontconfig draws with
    assert all(drawn(letter, bundled) != drawn(missing, bundled) for letter in "éëΩμέ")
