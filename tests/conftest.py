"""Shared fixtures: a tiny ViT checkpoint, its bundle exported through the real code path, images."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # benchmarks/ holds the trained fixture and the photo edits the tests share

# The skip report (every skip listed with its reason; in CI, a skip off the allow-list fails the run)
from skip_report import pytest_collectreport, pytest_runtest_logreport, pytest_sessionfinish, pytest_terminal_summary  # noqa: E402,F401,I001


def _checkout_is_what_runs() -> None:
    """The tests run the checkout, in this process and in the console scripts they start: an installed copy
    that is not this checkout (a plain `pip install .` from before the last edit) would test stale code."""
    import importlib.metadata
    import json

    import edge_search.runtime

    imported = Path(edge_search.runtime.__file__).resolve().parent
    installed = [d.read_text("direct_url.json") for d in importlib.metadata.distributions(name="edge-search")]
    direct = json.loads(next((text for text in installed if text), "{}"))  # (an egg-info in the checkout has none)
    editable = direct.get("dir_info", {}).get("editable", False)
    installed_from = direct.get("url", "").removeprefix("file://")
    if imported != ROOT / "runtime" or not editable or Path(installed_from).resolve() != ROOT:
        pytest.exit(
            f"The tests would run an installed copy of edge-search ({imported}, installed from "
            f"{installed_from or 'an unknown place'}{'' if editable else ', not editable'}) instead of this "
            f"checkout ({ROOT}). Install the checkout editable: pip install -e '.[cpu,export,serve,test]'",
            returncode=4,
        )


def pytest_configure(config: pytest.Config) -> None:
    _checkout_is_what_runs()
    # Nothing a test runs writes to the user's own cache or data: verified-file states, notes shown, indexes.
    # The trained fixture stays where it was built once per machine (EDGE_SEARCH_FIXTURES, else ~/.cache).
    from benchmarks.trained_fixture import fixture_root

    os.environ.setdefault("EDGE_SEARCH_FIXTURES", str(fixture_root()))
    home = Path(tempfile.mkdtemp(prefix="edge-search-tests-"))
    for variable in ("XDG_CACHE_HOME", "XDG_DATA_HOME", "XDG_CONFIG_HOME", "XDG_STATE_HOME"):
        os.environ[variable] = str(home / variable.lower())
    for variable in ("EDGE_SEARCH_INDEX", "EDGE_SEARCH_MODEL", "EDGE_SEARCH_DEVICE", "EDGE_SEARCH_PRECISION"):
        os.environ.pop(variable, None)


TINY_VIT = dict(
    hidden_size=48, num_hidden_layers=2, num_attention_heads=4, intermediate_size=96, image_size=32, patch_size=8
)


def save_tiny(directory: Path, model_type: str = "vit", layers: int = 2) -> Path:
    """A random-weight encoder + its image processor, written with save_pretrained (seeded, no network)."""
    import torch
    from transformers import (
        BitImageProcessor,
        DeiTConfig,
        DeiTImageProcessor,
        DeiTModel,
        Dinov2Config,
        Dinov2Model,
        ViTConfig,
        ViTForImageClassification,
        ViTImageProcessor,
    )

    torch.manual_seed(0)
    shape = {**TINY_VIT, "num_hidden_layers": layers}
    if model_type == "vit":
        model = ViTForImageClassification(ViTConfig(**shape, num_labels=3))
        processor = ViTImageProcessor(size={"height": 32, "width": 32})
    elif model_type == "deit":
        model = DeiTModel(DeiTConfig(**shape))
        processor = DeiTImageProcessor(size={"height": 40, "width": 40}, crop_size={"height": 32, "width": 32})
    elif model_type == "dinov2":
        model = Dinov2Model(Dinov2Config(**{**shape, "image_size": 64}))
        processor = BitImageProcessor(
            size={"shortest_edge": 36},
            crop_size={"height": 32, "width": 32},
            do_center_crop=True,
            resample=3,
            image_mean=[0.485, 0.456, 0.406],
            image_std=[0.229, 0.224, 0.225],
        )
    else:
        raise ValueError(model_type)
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory


def save_tiny_clip(directory: Path) -> Path:
    """A random-weight CLIPModel with a character-level BPE vocabulary (slow and fast tokenizer files),
    and CLIP's image processor (shortest edge, centre crop, bicubic), seeded, with no network."""
    import json
    import string

    import torch
    from transformers import (
        CLIPConfig,
        CLIPImageProcessor,
        CLIPModel,
        CLIPTokenizer,
        CLIPTokenizerFast,
    )

    directory.mkdir(parents=True, exist_ok=True)
    symbols = list(string.ascii_lowercase + string.digits + string.punctuation)
    merges = ["t h", "th e</w>", "a n", "o n</w>", "i n", "d o", "o g</w>"]
    vocab: dict[str, int] = {}
    for token in symbols + [s + "</w>" for s in symbols] + [m.replace(" ", "") for m in merges]:
        vocab.setdefault(token, len(vocab))
    vocab["<|startoftext|>"], vocab["<|endoftext|>"] = len(vocab), len(vocab) + 1
    (directory / "vocab.json").write_text(json.dumps(vocab))
    (directory / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    CLIPTokenizer(str(directory / "vocab.json"), str(directory / "merges.txt")).save_pretrained(directory)
    CLIPTokenizerFast.from_pretrained(directory).save_pretrained(directory)  # writes tokenizer.json
    ends = vocab["<|endoftext|>"]
    config = CLIPConfig(
        text_config=dict(
            vocab_size=len(vocab),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            max_position_embeddings=77,
            bos_token_id=vocab["<|startoftext|>"],
            eos_token_id=ends,
            pad_token_id=ends,
        ),
        vision_config=dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=32,
            patch_size=8,
        ),
        projection_dim=24,
    )
    torch.manual_seed(0)
    CLIPModel(config).save_pretrained(directory)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def tiny_clip_checkpoint(tmp_path_factory) -> Path:
    return save_tiny_clip(tmp_path_factory.mktemp("tiny-clip"))


def export_tiny(checkpoint: Path, tmp_path_factory, name: str) -> Path:
    """A bundle exported from `checkpoint` through the real export path, without int8-static: the tiny random
    models' int8-static graph passes its gate on some CPUs only (tests/export/test_calibration.py covers it)."""
    from edge_search.export.pipeline import export_bundle

    out = tmp_path_factory.mktemp("bundles") / name
    export_bundle(model=str(checkpoint), out=out, precisions=("fp32", "fp16", "int8"))
    return out


@pytest.fixture(scope="session")
def tiny_clip_bundle(tiny_clip_checkpoint, tmp_path_factory) -> Path:
    return export_tiny(tiny_clip_checkpoint, tmp_path_factory, "tiny-clip")


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A ViTForImageClassification checkpoint (head included, as many hub checkpoints are)."""
    return save_tiny(tmp_path_factory.mktemp("tiny-vit"))


@pytest.fixture(scope="session")
def tiny_bundle(tiny_checkpoint, tmp_path_factory) -> Path:
    return export_tiny(tiny_checkpoint, tmp_path_factory, "tiny")


TRAINED_FORMS = ("vit", "dinov2")  # the trained fixture's two checkpoint forms: ViTModel and Dinov2Model


@pytest.fixture(scope="session")
def trained():
    """The trained DINOv2 ViT-S/14 fixture (two checkpoint forms) and real photos, built once per machine
    (benchmarks/trained_fixture.py). Skipped where the package index cannot be reached, except where
    EDGE_SEARCH_TEST_REQUIRE_TRAINED=1 (CI), where that is a failure."""
    from benchmarks.trained_fixture import FixtureUnavailable, trained_fixture

    try:
        return trained_fixture()
    except FixtureUnavailable as exc:
        if os.environ.get("EDGE_SEARCH_TEST_REQUIRE_TRAINED") == "1":
            pytest.fail(f"the trained fixture is required here: {exc}")
        pytest.skip(f"no trained fixture: {exc}")


@pytest.fixture(scope="session")
def trained_bundles(trained, debian_photos, tmp_path_factory) -> dict[str, Path]:
    """Each checkpoint form exported in every precision through the real export path. The Dinov2Model form's
    int8-static is calibrated on Debian's wallpaper photographs (the fixture's photos, on which it is checked
    below, are never seen by calibration); the ViTModel form's as export-model does by default, on the photos
    shipped with the package (scikit-image's, like the fixture's: it is checked on Debian's photos instead)."""
    out = tmp_path_factory.mktemp("trained-bundles")
    from edge_search.export.pipeline import export_bundle

    for form in TRAINED_FORMS:
        export_bundle(
            model=str(getattr(trained, form)),
            out=out / form,
            calibration_photos=debian_photos if form == "dinov2" else None,
        )
    return {form: out / form for form in TRAINED_FORMS}


@pytest.fixture(scope="session")
def debian_photos() -> Path:
    """Debian's wallpaper photographs (benchmarks/real_photos.py: 131 images, ~200 MB of packages fetched with
    apt-get download once per checkout). Skipped where they cannot be fetched, failed where
    EDGE_SEARCH_TEST_REQUIRE_TRAINED=1 (CI)."""
    from benchmarks.real_photos import real_photos

    try:
        return real_photos(ROOT / "benchmarks" / ".cache" / "real-photos")
    except SystemExit as exc:
        if os.environ.get("EDGE_SEARCH_TEST_REQUIRE_TRAINED") == "1":
            pytest.fail(f"Debian's photos are required here: {exc}")
        pytest.skip(f"no Debian photos: {exc}")


def photo(seed: int, width: int = 160, height: int = 120) -> Image.Image:
    from edge_search.export.synthetic import photo_like

    return photo_like(seed, width, height)


def jpeg_with_comment(data: bytes, comment: str) -> bytes:
    """A JPEG's bytes with a comment segment after its start marker: another file (another sha256), the same
    picture. Many distinct files cost 8 encoded pictures instead of hundreds (identical files are embedded once)."""
    text = comment.encode()
    return data[:2] + b"\xff\xfe" + (len(text) + 2).to_bytes(2, "big") + text + data[2:]


@pytest.fixture(scope="module")
def model(tiny_bundle):
    """The tiny bundle opened on the CPU in fp32 (fp32: scores do not depend on this CPU's int8 kernels)."""
    from edge_search.runtime.library import Model
    from edge_search.runtime.options import ModelOptions

    return Model.open(tiny_bundle, ModelOptions(device="cpu", precision="fp32"))


@pytest.fixture
def indexed(tmp_path, tiny_bundle, photo_dir) -> tuple[dict[str, str], Path]:
    """(the CLI environment, the photo folder) after `edge-search index` of the twelve photos."""
    env = cli_env(tmp_path, tiny_bundle)
    assert run_script("edge-search", "index", str(photo_dir), env=env).returncode == 0
    return env, photo_dir


@pytest.fixture
def photo_dir(tmp_path) -> Path:
    """Twelve distinct photo-like images in a folder with a subfolder, in mixed formats."""
    root = tmp_path / "photos"
    (root / "sub").mkdir(parents=True)
    formats = [".jpg", ".png", ".webp", ".bmp", ".gif", ".tiff"]
    for i in range(12):
        folder = root / "sub" if i % 4 == 0 else root
        photo(100 + i, 120 + 10 * i, 100 + 7 * i).save(folder / f"img{i:02d}{formats[i % len(formats)]}")
    return root


def cli_env(tmp_path: Path, bundle: Path, **extra: str) -> dict[str, str]:
    # the CPU class stand-in (CONTRIBUTING.md "CPU classes") reaches the scripts as it reaches this process
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGE_SEARCH_") or k == "EDGE_SEARCH_CPU_CLASS"}
    env.update(
        EDGE_SEARCH_MODEL=str(bundle),
        EDGE_SEARCH_INDEX=str(tmp_path / "index"),
        EDGE_SEARCH_DEVICE="cpu",
        XDG_CACHE_HOME=str(tmp_path / "cache"),
        XDG_DATA_HOME=str(tmp_path / "data"),
    )
    env.update(extra)
    return env


def edge_search(*args: str, env: dict[str, str], timeout: float = 300, **kwargs) -> subprocess.CompletedProcess:
    """Run the real CLI in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "edge_search.runtime", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        **kwargs,
    )


def transformers_embeddings(checkpoint, paths) -> np.ndarray:
    """The reference pipeline: the checkpoint's own (slow, PIL-based) image processor and encoder through
    transformers, CLS of the last hidden state, L2-normalised."""
    import torch
    from transformers import AutoImageProcessor, AutoModel

    processor = AutoImageProcessor.from_pretrained(checkpoint, use_fast=False)
    model = AutoModel.from_pretrained(checkpoint).eval()
    images = [Image.open(p).convert("RGB") for p in paths]
    with torch.no_grad():
        cls = model(**processor(images=images, return_tensors="pt")).last_hidden_state[:, 0].numpy()
    return cls / np.linalg.norm(cls, axis=1, keepdims=True)


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = np.atleast_2d(a) / np.linalg.norm(np.atleast_2d(a), axis=1, keepdims=True)
    b = np.atleast_2d(b) / np.linalg.norm(np.atleast_2d(b), axis=1, keepdims=True)
    return (a * b).sum(axis=1)


def console_script(name: str) -> str:
    """The installed console script (as a user runs it), from the virtualenv running the tests."""
    path = Path(sys.executable).parent / name
    assert path.exists(), f"{name} is not installed in {path.parent}: pip install the project first"
    return str(path)


def run_script(
    name: str, *args: str, env: dict[str, str], timeout: float = 300, **kwargs
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [console_script(name), *args], env=env, capture_output=True, text=True, timeout=timeout, **kwargs
    )


CALIBRATION_PHOTOS = ROOT / "export" / "calibration"  # 15 real photos shipped with the package (scikit-image's)
SLIDESHOW_PHOTOS = ("astronaut", "brick", "chelsea", "coffee", "rocket", "horse")


def make_slideshow(out: Path, *, codec: str = "h264", transitions: tuple[str, ...] = ("fade",)) -> list:
    """Six real photos, 3 s each, joined by fades (or the transitions given), at 320×240 and 10 frames/s: the
    spans (benchmarks/slideshow.py) say which seconds show which photo."""
    from benchmarks.slideshow import make_slideshow as make

    photos = [CALIBRATION_PHOTOS / f"{name}.jpg" for name in SLIDESHOW_PHOTOS]
    return make(photos, out, codec=codec, size=(320, 240), fps=10, transitions=transitions)
