"""On trained weights (a real DINOv2 ViT-S/14, the `trained` fixture) and real photos: every precision
exports within its gate in both checkpoint forms, the runtime reproduces transformers, and search finds
what a person expects. Random weights hide all of this: trained transformers have outlier activations."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from benchmarks.edits import MILD, save_edit
from benchmarks.int8_schemes import top10_overlap
from conftest import TRAINED_FORMS, cli_env, cosine, edge_search, transformers_embeddings
from edge_search.export import static_int8
from edge_search.runtime.errors import BundleError
from edge_search.runtime.host import int8_kernels_saturate, real_cpu_facts
from edge_search.runtime.library import Library, Model
from edge_search.runtime.model.tuning import GATE
from edge_search.runtime.options import ModelOptions

pytestmark = pytest.mark.slow  # tier: CONTRIBUTING.md "The test tiers"

FORMS = TRAINED_FORMS
# What the runtime's embedding of a real photo must keep of transformers' own (cosine), per precision.
FIDELITY = {"fp32": 0.99999, "fp16": 0.999, "int8": 0.995, "int8-static": 0.995}


def gate(trial: dict) -> float:
    """An engine trial's gate against the bundle's fp32 embeddings (`model.tuning.GATE`)."""
    return GATE["bf16" if trial["bf16"] else trial["precision"]]


@pytest.fixture(scope="module")
def bundles(trained_bundles) -> dict[str, Path]:
    return trained_bundles


@pytest.fixture(scope="module")
def photos(trained) -> list[Path]:
    return sorted(trained.photos.iterdir())


# Where a CPU's int8 kernels saturate (AVX2 without VNNI), these weights' int8 graphs measure 0.993-0.995 against
# PyTorch, at the gate, and may be left out; even there a graph below this floor is broken, not saturated.
SATURATED_FLOOR = 0.99


def offered(bundle: Path, precision: str) -> bool:
    """Whether the export's parity gate, measured on this CPU, let `precision` into the bundle. Only int8 graphs
    may be left out, only on a CPU whose int8 kernels saturate (the real CPU's arithmetic, whatever stands in for
    its facts), and only by a little (`SATURATED_FLOOR`): a broken int8 graph fails here on every CPU. Wherever
    one is left out, the runtime refuses it with the measured reason."""
    manifest = json.loads((bundle / "manifest.json").read_text())
    if precision in manifest["files"]:
        return True
    assert precision.startswith("int8"), manifest["rejected"]
    rejected = manifest["rejected"][precision]
    assert real_cpu_facts().int8_kernels_saturate(), f"{precision} left out on a CPU with int8 dot products: {rejected}"
    assert SATURATED_FLOOR <= rejected["min_cosine"] < rejected["threshold"] == FIDELITY[precision], rejected
    with pytest.raises(BundleError, match="failed its parity gate"):
        Model.open(bundle, ModelOptions(device="cpu", precision=precision))
    return False


def skip_unless_offered(bundle: Path, precision: str) -> None:
    """Skip (naming the measured figure) where this CPU's gate left `precision` out; `offered` has then checked it
    was left out for saturating kernels and not for a broken graph."""
    if not offered(bundle, precision):
        rejected = json.loads((bundle / "manifest.json").read_text())["rejected"][precision]
        pytest.skip(
            f"{precision} not offered on this CPU: int8 kernels saturate here (AVX2 without VNNI), min cosine "
            f"{rejected['min_cosine']:.4f} under its {rejected['threshold']} gate, above the {SATURATED_FLOOR} floor"
        )


@pytest.mark.parametrize("form", FORMS)
def test_both_checkpoint_forms_export_every_precision_within_its_gate(bundles, form):
    manifest = json.loads((bundles[form] / "manifest.json").read_text())
    expected = ["fp16", "fp32", "int8", "int8-static"]
    assert sorted([*manifest["files"], *manifest["rejected"]]) == expected
    assert all(offered(bundles[form], precision) for precision in ("fp32", "fp16"))
    for precision, spec in manifest["files"].items():
        assert spec["parity"]["min_cosine"] >= FIDELITY[precision], precision
    if offered(bundles[form], "int8"):
        weights = "uint8 per output channel (exported on a CPU without VNNI)" if int8_kernels_saturate() else "int8"
        assert manifest["files"]["int8"]["quantization"]["weights"].startswith(weights)


def test_dinov2_at_its_real_config_keeps_no_resize_in_the_graph(bundles, trained):
    config = json.loads((trained.dinov2 / "config.json").read_text())
    assert (config["image_size"], config["patch_size"]) == (518, 14)  # a 37x37 grid, the input's is 16x16
    for precision in [p for p in ("fp32", "fp16", "int8") if offered(bundles["dinov2"], p)]:
        ops = {node.op_type for node in onnx.load(str(bundles["dinov2"] / f"model.{precision}.onnx")).graph.node}
        assert "Resize" not in ops


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
@pytest.mark.parametrize("form", FORMS)
def test_runtime_embeddings_of_real_photos_match_transformers(bundles, trained, photos, form, precision):
    """Full JPEG decoding: the reference pipeline decodes every pixel (draft decoding is measured below)."""
    skip_unless_offered(bundles[form], precision)
    reference = transformers_embeddings(getattr(trained, form), photos)
    model = Model.open(bundles[form], ModelOptions(device="cpu", precision=precision, jpeg_draft=False))
    results = list(model.embed_paths(photos))
    assert all(r.ok for r in results)
    got = np.stack([r.vector for r in results])
    assert cosine(got, reference).min() >= FIDELITY[precision]


def test_jpeg_draft_decoding_is_a_documented_near_copy_of_full_decoding(bundles, photos):
    """README: DCT-scaled decoding of large JPEGs moves trained-weight embeddings by at most ~2e-4 cosine."""
    jpegs = [p for p in photos if p.suffix == ".jpg"]
    full = Model.open(bundles["vit"], ModelOptions(device="cpu", precision="fp32", jpeg_draft=False))
    draft = Model.open(bundles["vit"], ModelOptions(device="cpu", precision="fp32"))
    a = np.stack([r.vector for r in full.embed_paths(jpegs)])
    b = np.stack([r.vector for r in draft.embed_paths(jpegs)])
    assert cosine(a, b).min() >= 0.9995


def test_int8_embeds_a_photo_alike_alone_and_among_others(bundles, photos):
    skip_unless_offered(bundles["vit"], "int8")
    model = Model.open(bundles["vit"], ModelOptions(device="cpu", precision="int8"))
    together = {r.path: r.vector for r in model.embed_paths(photos[:9])}
    alone = model.embed_image(photos[4])
    assert cosine(alone, together[photos[4]])[0] >= 0.99999


def test_the_two_motorcycle_views_are_each_others_nearest(bundles, trained, tmp_path):
    env = cli_env(tmp_path, bundles["vit"])
    assert edge_search("index", str(trained.photos), env=env).returncode == 0
    for view, other in (
        ("motorcycle_left.png", "motorcycle_right.png"),
        ("motorcycle_right.png", "motorcycle_left.png"),
    ):
        result = edge_search("query", str(trained.photo(view)), "--exclude-self", "-k", "1", "-f", env=env)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == str(trained.photo(other))


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_the_original_of_a_mild_edit_comes_first(bundles, trained, photos, tmp_path, precision):
    """Every photograph, edited mildly, finds itself first among all the photos (textures and scans
    included); the hard edits, and textures and scans as queries, are measured by `python -m benchmarks`."""
    skip_unless_offered(bundles["vit"], precision)
    model = Model.open(bundles["vit"], ModelOptions(device="cpu", precision=precision))
    edited = tmp_path / "edited"
    edited.mkdir()
    with Library(tmp_path / "index") as library:
        library.index(model, [photos[0].parent])
        misses = []
        for original in trained.photographs:
            for edit in MILD:
                copy = save_edit(original, edit, edited)
                best = library.query(model, images=[copy], k=1).hits[0]
                if best.path != str(original):
                    misses.append(f"{copy.name} -> {best.path} ({best.score:.3f})")
    assert misses == [], misses


@pytest.fixture(scope="module")
def openvino_model(bundles) -> Model:
    return Model.open(bundles["dinov2"], ModelOptions(device="openvino", jpeg_draft=False))


def test_openvino_runs_the_calibrated_int8_static_graph(bundles, openvino_model):
    best = "int8-static" if offered(bundles["dinov2"], "int8-static") else "fp32"
    assert (openvino_model.provider, openvino_model.precision) == ("OpenVINO CPU", best)


def test_openvino_int8_static_keeps_transformers_embeddings_and_neighbours(bundles, openvino_model, trained, photos):
    """int8's gates: min cosine >= 0.995 against transformers on every photo, and each photo's 10 nearest among
    the others the same as transformers' (overlap >= 0.95; near-ties among textures reorder, so the figure
    onnxruntime's int8 reaches on these photos is accepted where it is lower)."""
    skip_unless_offered(bundles["dinov2"], "int8-static")
    skip_unless_offered(bundles["dinov2"], "int8")
    reference = transformers_embeddings(trained.dinov2, photos)
    got = np.stack([r.vector for r in openvino_model.embed_paths(photos)])
    assert cosine(got, reference).min() >= FIDELITY["int8-static"]
    int8 = Model.open(bundles["dinov2"], ModelOptions(device="cpu", precision="int8", jpeg_draft=False))
    int8_overlap = top10_overlap(np.stack([r.vector for r in int8.embed_paths(photos)]), reference)
    assert top10_overlap(got, reference) >= min(0.95, int8_overlap)


def test_int8_static_calibrated_on_the_shipped_photos_keeps_transformers_embeddings_of_real_photos(
    bundles, trained, debian_photos
):
    """The default export's int8-static graph (no --calibration-photos) within its gate on photos it never saw."""
    skip_unless_offered(bundles["vit"], "int8-static")
    quantization = json.loads((bundles["vit"] / "manifest.json").read_text())["files"]["int8-static"]["quantization"]
    assert quantization["calibration_source"] == static_int8.SHIPPED_LABEL
    photos = sorted(p for p in debian_photos.iterdir() if p.suffix == ".jpg")[::3]  # no alpha to lay over white
    reference = transformers_embeddings(trained.vit, photos)
    model = Model.open(bundles["vit"], ModelOptions(device="openvino", precision="int8-static", jpeg_draft=False))
    got = np.stack([r.vector for r in model.embed_paths(photos)])
    assert cosine(got, reference).min() >= FIDELITY["int8-static"]


def test_openvino_embeds_a_photo_alike_alone_and_among_others(openvino_model, photos):
    together = {r.path: r.vector for r in openvino_model.embed_paths(photos[:9])}
    alone = openvino_model.embed_image(photos[4])
    assert cosine(alone, together[photos[4]])[0] >= 0.99999


def test_auto_indexes_on_the_engine_it_measured_fastest_among_those_true_to_the_model(bundles, trained, tmp_path):
    """On trained weights every engine's embeddings are checked against the bundle's fp32 ones before it may be
    chosen (bf16 0.999, int8 0.995): the fastest that passes indexes, and a compiled OpenVINO model is cached."""
    env = cli_env(tmp_path, bundles["dinov2"], EDGE_SEARCH_DEVICE="auto")
    result = edge_search("index", str(trained.photos), "--json", env=env)
    assert result.returncode == 0, result.stderr
    trials = json.loads(edge_search("info", "--json", env=env).stdout)["engine_trials"]
    assert {"onnxruntime CPU fp32", "OpenVINO fp32"} <= {t["engine"] for t in trials}
    assert all(t["passes"] == (t["error"] is None and t["min_cosine"] >= gate(t)) for t in trials), trials
    chosen = max((t for t in trials if t["passes"]), key=lambda t: t["images_per_s"])
    provider = {"cpu": "CPUExecutionProvider", "openvino": "OpenVINO CPU"}[chosen["device"]]
    provider += " bf16" if chosen["bf16"] else ""
    assert (json.loads(result.stdout)["provider"], json.loads(result.stdout)["precision"]) == (
        provider,
        chosen["precision"],
    )
    if chosen["device"] == "openvino":
        assert any((tmp_path / "cache" / "edge-search" / "openvino").iterdir())  # the compiled model, for next time
    query = edge_search("query", str(trained.photo("motorcycle_left.png")), "--exclude-self", "-k", "1", "-f", env=env)
    assert query.returncode == 0, query.stderr
    assert query.stdout.strip() == str(trained.photo("motorcycle_right.png"))
