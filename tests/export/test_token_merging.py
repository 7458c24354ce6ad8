"""export-model --merge-tokens: every block merges similar tokens (ToMe), and each graph is gated against the same
merging run in PyTorch; the merged bundle is a different embedding, and says so."""

from __future__ import annotations

import json
import subprocess
import sys

import onnx
import pytest
import torch

from conftest import cli_env, cosine, edge_search, run_script, save_tiny
from edge_search.export.cli import EXIT_CODES
from edge_search.export.errors import ExportUsageError
from edge_search.export.merged_attention import has_attention_bias
from edge_search.export.pipeline import export_bundle
from edge_search.export.token_merging import TokenMergingEncoder, merge
from edge_search.runtime.cli.app import EXIT_CODES as RUNTIME_EXIT_CODES
from edge_search.runtime.errors import IndexMismatch
from edge_search.runtime.model.bundle import Bundle

EXIT_USAGE = EXIT_CODES[ExportUsageError]
NO_STATIC = ("--precision", "fp32", "--precision", "fp16", "--precision", "int8")


def export_model(*args: str, env: dict) -> subprocess.CompletedProcess:
    return run_script("export-model", *args, env=env, timeout=600)


@pytest.fixture(scope="module")
def three_blocks(tmp_path_factory):
    """A tiny ViT with three blocks (17 tokens): two merge, the last runs for the class token."""
    return save_tiny(tmp_path_factory.mktemp("three-blocks"), layers=3)


@pytest.fixture(scope="module")
def merged_bundle(three_blocks, tmp_path_factory):
    out = tmp_path_factory.mktemp("merged") / "bundle"
    env = cli_env(out.parent, out)
    result = export_model("--model", str(three_blocks), "--out", str(out), "--merge-tokens", "3", *NO_STATIC, env=env)
    assert result.returncode == 0, result.stderr
    return out, result


@pytest.fixture(scope="module")
def unmerged_bundle(three_blocks, tmp_path_factory):
    out = tmp_path_factory.mktemp("unmerged") / "bundle"
    export_bundle(model=str(three_blocks), out=out, precisions=("fp32",))
    return out


@pytest.mark.parametrize("model_type", ["vit", "deit", "dinov2"])
def test_merging_no_tokens_reproduces_transformers(model_type, tmp_path):
    from transformers import AutoModel

    encoder = AutoModel.from_pretrained(save_tiny(tmp_path, model_type)).eval()
    pixels = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = encoder(pixel_values=pixels).last_hidden_state[:, 0].numpy()
        merged_nothing = TokenMergingEncoder(encoder, 0)(pixels).numpy()
    assert cosine(merged_nothing, expected).min() >= 0.99999


def test_merging_keeps_every_patch_accounted_for():
    generator = torch.Generator().manual_seed(0)
    hidden, metric = torch.randn(2, 17, 8, generator=generator), torch.randn(2, 17, 4, generator=generator)
    size = torch.randint(1, 4, (2, 17, 1), generator=generator).float()
    merged, merged_size = merge(hidden, metric, size, r=5)
    assert merged.shape == (2, 12, 8)
    assert torch.equal(merged_size.sum(dim=1), size.sum(dim=1))  # no patch lost or counted twice
    assert torch.allclose((merged * merged_size).sum(dim=1), (hidden * size).sum(dim=1), atol=1e-4)
    assert torch.allclose(merged[:, 0], hidden[:, 0]) and torch.equal(merged_size[:, 0], size[:, 0])  # class token


def test_the_most_similar_tokens_merge_first_and_the_class_token_never_does():
    metric = torch.eye(9)[None]  # every token unlike every other ...
    metric[0, 4] = metric[0, 7]  # ... but token 4 is token 7's twin
    metric[0, 0] = metric[0, 1]  # and the class token is token 1's twin, yet stays
    hidden = torch.arange(9, dtype=torch.float32)[None, :, None]
    merged, size = merge(hidden, metric, torch.ones(1, 9, 1), r=1)
    assert merged[0, :, 0].tolist() == [0, 2, 6, 8, 1, 3, 5, 5.5]  # kept in order; 4 and 7 averaged
    assert size[0, :, 0].tolist() == [1, 1, 1, 1, 1, 1, 1, 2]


def test_deits_distillation_token_takes_in_no_patch():
    metric = torch.eye(9)[None]
    metric[0, 2] = metric[0, 1]  # token 2 is the distillation token's (token 1's) twin
    _, size = merge(torch.zeros(1, 9, 1), metric, torch.ones(1, 9, 1), r=1, special=2)
    assert size[0, 4, 0] == 1  # the first receiving token (the distillation token) still stands for itself
    _, size = merge(torch.zeros(1, 9, 1), metric, torch.ones(1, 9, 1), r=1, special=1)
    assert size[0, 4, 0] == 2  # as a patch it would have taken token 2 in


def test_a_merged_bundle_is_gated_against_merged_pytorch_and_records_what_merging_costs(merged_bundle, unmerged_bundle):
    out, result = merged_bundle
    manifest = json.loads((out / "manifest.json").read_text())
    merging = manifest["token_merging"]
    assert (merging["r"], merging["tokens"], merging["tokens_last_block"]) == (3, 17, 11)
    assert 0.9 < merging["against_unmerged"]["min_cosine"] < 1  # a different embedding, close to the unmerged
    for precision, gate in (("fp32", 0.99999), ("fp16", 0.999), ("int8", 0.995)):  # each reproduces merged PyTorch
        assert manifest["files"][precision]["parity"]["min_cosine"] >= gate
    assert "token merging: 3 per block, 11 of 17 tokens in the last block" in result.stdout
    assert Bundle.load(out).identity != Bundle.load(unmerged_bundle).identity


def test_every_merging_block_keeps_one_fused_attention_and_int8_keeps_the_merge_bias(merged_bundle):
    out, _ = merged_bundle

    def attention_nodes(precision: str) -> list[tuple[str, bool]]:
        graph = onnx.load(str(out / f"model.{precision}.onnx")).graph
        return [(n.op_type, has_attention_bias(n)) for n in graph.node if n.op_type.endswith("Attention")]

    # block 1 sees single patches (no bias), block 2 merged tokens (proportional attention's bias); the last block
    # runs for the class token alone, unfused as without merging
    assert attention_nodes("fp32") == [("Attention", False), ("Attention", True)]
    assert attention_nodes("fp16") == [("Attention", False), ("Attention", True)]
    # QAttention has no bias input: the biased attention stays fp32 rather than lose it
    assert attention_nodes("int8") == [("QAttention", False), ("Attention", True)]


def test_info_names_the_merging_and_an_index_of_the_unmerged_model_refuses_it(
    merged_bundle, unmerged_bundle, photo_dir, tmp_path
):
    out, _ = merged_bundle
    merged_env = cli_env(tmp_path, out)
    assert edge_search("index", str(photo_dir), env=merged_env).returncode == 0
    info = edge_search("info", env=merged_env)
    assert "token merging 3 per block (11 of 17 tokens in the last block)" in info.stdout
    unmerged_env = cli_env(tmp_path / "unmerged", unmerged_bundle)
    assert edge_search("index", str(photo_dir), env=unmerged_env).returncode == 0
    refused = edge_search("query", str(next(photo_dir.iterdir())), env={**unmerged_env, "EDGE_SEARCH_MODEL": str(out)})
    assert refused.returncode == RUNTIME_EXIT_CODES[IndexMismatch]
    assert "different model bundle" in " ".join(refused.stderr.split())
    assert "Traceback" not in refused.stderr


def test_merging_more_tokens_than_the_image_has_is_refused_before_anything_is_written(three_blocks, tmp_path):
    with pytest.raises(ExportUsageError) as refused:  # 16 patches, two blocks before the last: at most 7 each
        export_bundle(model=str(three_blocks), out=tmp_path / "b", precisions=("fp32",), merge_tokens=8)
    assert "--merge-tokens 8 is more than this model can merge" in str(refused.value)
    assert "at most 7 per block" in str(refused.value) and not (tmp_path / "b").exists()
    negative = export_model("--out", str(tmp_path / "b"), "--merge-tokens", "-1", env=cli_env(tmp_path, tmp_path / "b"))
    assert negative.returncode == EXIT_USAGE and "--merge-tokens" in negative.stderr


def test_keep_existing_does_not_keep_a_bundle_merged_otherwise(merged_bundle, three_blocks):
    out, _ = merged_bundle
    before = (out / "manifest.json").read_bytes()
    refused = export_model(
        "--model", str(three_blocks), "--out", str(out), "--keep-existing", env=cli_env(out.parent, out)
    )
    assert refused.returncode == EXIT_USAGE and "merging 3 tokens per block" in refused.stderr
    assert (out / "manifest.json").read_bytes() == before
    kept = export_model(
        "--model",
        str(three_blocks),
        "--out",
        str(out),
        "--keep-existing",
        "--merge-tokens",
        "3",
        env=cli_env(out.parent, out),
    )
    assert kept.returncode == 0 and "Kept the existing bundle" in kept.stdout


def test_the_export_options_name_merging(tmp_path):
    shown = subprocess.run([sys.executable, "-m", "edge_search.export", "--help"], capture_output=True, text=True)
    assert "--merge-tokens" in shown.stdout
