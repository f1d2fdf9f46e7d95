"""The GGUF file as written: per-layer widths and stubs, rope permutation and factors, tokenizer keys,
tensor types, refusals. Read back with the ``gguf`` package; llama.cpp itself runs the files in
test_gguf_llama_cpp.py."""

from __future__ import annotations

import json
from pathlib import Path

import gguf
import pytest
import torch
from gguf_models import export_cli, pruned_layout_model, style_tokenizer
from layout_runs import layout_dir
from transformers import LlamaConfig
from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

from supernet.errors import UsageError
from supernet.io.export.deci_layers import DeciLayer, deci_layer
from supernet.io.export.gguf import check_route, export_gguf, permute_rope, rope_factors
from supernet.io.export.gguf_vocab import pre_tokenizer_name


def shape(heads: int, kv: int, ff: int, attn_bias: bool = False, mlp_bias: bool = False) -> dict:
    return {"num_attention_heads": heads, "num_key_value_heads": kv, "intermediate_size": ff,
            "attn_out_bias": attn_bias, "mlp_out_bias": mlp_bias}  # fmt: skip


@pytest.mark.parametrize(
    ("index", "layer", "expected"),
    [
        (1, shape(8, 2, 100), DeciLayer(8, 2, 100, attn_stub=False, mlp_stub=False)),
        (1, shape(0, 0, 100), DeciLayer(0, 0, 100, attn_stub=False, mlp_stub=False)),  # skipped exactly
        (0, shape(0, 0, 100), DeciLayer(1, 1, 100, attn_stub=True, mlp_stub=False)),  # layer 0 keeps a head
        (1, shape(0, 0, 100, attn_bias=True), DeciLayer(1, 1, 100, attn_stub=True, mlp_stub=False)),  # its bias
        (1, shape(8, 2, 0), DeciLayer(8, 2, 1, attn_stub=False, mlp_stub=True)),  # keeps the attention output
        (1, shape(0, 0, 0), DeciLayer(0, 0, 0, attn_stub=False, mlp_stub=False)),  # an identity layer
        (1, shape(0, 0, 0, mlp_bias=True), DeciLayer(0, 0, 1, attn_stub=False, mlp_stub=True)),
    ],
)
def test_deci_widths_stub_what_the_graph_would_drop(index: int, layer: dict, expected: DeciLayer) -> None:
    assert deci_layer(index, layer) == expected


def test_permuted_rows_under_adjacent_pair_rope_equal_hf_rope_permuted() -> None:
    """HF rotates halves of a head (i with i + d/2); GGML's normal rope rotates adjacent pairs (2i, 2i+1).
    Rotating the permuted rows the GGML way gives the permuted HF result, for every position."""
    torch.manual_seed(0)
    heads, head_dim, positions = 3, 8, 5
    q = torch.randn(positions, heads * head_dim)
    inv_freq = 1.0 / 10000 ** (torch.arange(0, head_dim, 2).float() / head_dim)  # [d/2]
    angle = torch.arange(positions).float()[:, None] * inv_freq  # [positions, d/2]
    cos, sin = torch.cat([angle, angle], -1).cos(), torch.cat([angle, angle], -1).sin()
    hf = apply_rotary_pos_emb(q.view(1, positions, heads, head_dim).transpose(1, 2), q.new_zeros(1, heads, positions,
                              head_dim), cos[None], sin[None])[0].transpose(1, 2).reshape(positions, -1)  # fmt: skip
    permuted = permute_rope(q.T, heads).T.reshape(positions, heads, head_dim // 2, 2)  # adjacent pairs
    x, y = permuted[..., 0], permuted[..., 1]
    c, s = angle.cos()[:, None], angle.sin()[:, None]
    ggml = torch.stack([x * c - y * s, x * s + y * c], -1).reshape(positions, -1)
    torch.testing.assert_close(ggml, permute_rope(hf.T, heads).T)


def test_llama3_rope_factors_divide_the_base_frequencies_into_transformers_scaled_ones() -> None:
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    rope = {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
            "high_freq_factor": 4.0, "original_max_position_embeddings": 256}  # fmt: skip
    config = LlamaConfig(hidden_size=64, num_attention_heads=2, head_dim=32, max_position_embeddings=1024,
                         rope_parameters=rope)  # fmt: skip
    factors = rope_factors(config, 32)
    base = 1.0 / 500000.0 ** (torch.arange(0, 32, 2).double() / 32)
    scaled, _ = ROPE_INIT_FUNCTIONS["llama3"](config, "cpu")
    torch.testing.assert_close((base / factors.double()).float(), scaled.float())
    assert factors[0] == 1.0 and factors[-1] == 8.0  # high frequencies kept, low ones scaled by the factor
    assert rope_factors(LlamaConfig(hidden_size=64, num_attention_heads=2), 32) is None


def test_a_rope_scaled_by_position_is_refused() -> None:
    rope = {"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0, "original_max_position_embeddings": 256}
    config = LlamaConfig(hidden_size=64, num_attention_heads=2, max_position_embeddings=1024, rope_parameters=rope)
    with pytest.raises(UsageError, match="yarn"):
        rope_factors(config, 32)


@pytest.mark.parametrize("style", ["gpt-2", "llama-bpe", "qwen2"])
def test_pre_tokenizer_is_named_by_its_split(style: str) -> None:
    tokenizer = style_tokenizer(style, vocab_size=300)
    assert pre_tokenizer_name(json.loads(tokenizer.backend_tokenizer.to_str())) == style


def test_a_tokenizer_llama_cpp_would_split_differently_is_refused() -> None:
    tokenizer = json.loads(style_tokenizer("qwen2", vocab_size=300).backend_tokenizer.to_str())
    tokenizer["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = r"\s+|\S+"
    with pytest.raises(UsageError, match="pre-tokenizers"):
        pre_tokenizer_name(tokenizer)
    sentencepiece = {"model": {"type": "BPE", "byte_fallback": True}, "decoder": {"type": "Sequence"}}
    with pytest.raises(UsageError, match="byte-level BPE"):
        pre_tokenizer_name(sentencepiece)


@pytest.mark.parametrize("family", ["qwen3", "gemma2", "gemma3_text", "olmo2", "granite"])
def test_families_without_an_exact_route_are_refused_with_the_reason(family: str) -> None:
    with pytest.raises(UsageError, match=f"no llama.cpp route for {family}: .*deci"):
        check_route({"model_type": family})
    check_route({"model_type": "llama"})  # and the deci families pass


@pytest.fixture(scope="module")
def llama_gguf(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("gguf")
    model = pruned_layout_model("llama-3.1-8b", root / "model")
    return model, export_gguf(model, root / "model.gguf")


def field(reader: gguf.GGUFReader, key: str):
    return reader.get_field(key).contents()


def test_gguf_holds_each_layers_own_widths_and_head_size(llama_gguf: tuple[Path, Path]) -> None:
    model, path = llama_gguf
    shapes = json.loads((model / "config.json").read_text())["layer_shapes"]
    reader = gguf.GGUFReader(path)
    assert field(reader, "general.architecture") == "deci"
    expected = [deci_layer(i, s) for i, s in enumerate(shapes)]
    assert field(reader, "deci.attention.head_count") == [layer.heads for layer in expected]
    assert field(reader, "deci.attention.head_count_kv") == [layer.kv_heads for layer in expected]
    assert field(reader, "deci.feed_forward_length") == [layer.ff for layer in expected]
    # the fixture's layers: non-uniform, a removed attention (layer 1, with a bias) and a removed MLP (layer 2)
    assert shapes[1]["num_attention_heads"] == 0 and shapes[2]["intermediate_size"] == 0
    assert len({s["intermediate_size"] for s in shapes}) == 4
    assert field(reader, "deci.attention.key_length") == 128  # head_dim, not hidden / heads (64 / 32)
    assert field(reader, "tokenizer.ggml.pre") == "llama-bpe"
    assert field(reader, "tokenizer.ggml.add_bos_token") is True
    tensors = {t.name: t for t in reader.tensors}
    assert "blk.1.attn_q.weight" in tensors and not tensors["blk.1.attn_q.weight"].data.any()  # the stub is zero
    assert "blk.1.attn_output.bias" in tensors  # it carries the removed attention's bias
    assert tensors["blk.2.ffn_down.weight"].data.shape == (64, 1) and not tensors["blk.2.ffn_down.weight"].data.any()
    assert "output.weight" in tensors  # Llama-3.1-8B has an untied output


def test_q8_0_quantises_rows_of_32_and_keeps_other_rows_f16(llama_gguf: tuple[Path, Path], tmp_path: Path) -> None:
    model, _ = llama_gguf
    reader = gguf.GGUFReader(export_gguf(model, tmp_path / "q8.gguf", dtype="q8_0"))
    types = {t.name: t.tensor_type for t in reader.tensors}
    q8, f16, f32 = gguf.GGMLQuantizationType.Q8_0, gguf.GGMLQuantizationType.F16, gguf.GGMLQuantizationType.F32
    assert types["blk.0.attn_q.weight"] == q8  # rows of 64
    shapes = json.loads((model / "config.json").read_text())["layer_shapes"]
    assert shapes[3]["intermediate_size"] % 32 != 0 and types["blk.3.ffn_down.weight"] == f16
    assert types["blk.0.attn_norm.weight"] == f32


def test_strata_export_writes_run_dir_model_gguf(llama_gguf: tuple[Path, Path], tmp_path: Path, capsys) -> None:
    model, reference = llama_gguf
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "model").symlink_to(model)
    status, err = export_cli(capsys, str(run_dir))
    assert status == 0, err
    assert (run_dir / "model.gguf").read_bytes() == reference.read_bytes()  # deterministic, same as the API


def test_strata_export_refusals_are_one_line_errors(tmp_path: Path, tiny_reference_dir: Path, capsys) -> None:
    qwen3 = layout_dir("qwen3-0.6b", tiny_reference_dir, tmp_path / "qwen3")
    for args, expected in (
        ([str(tmp_path / "nothing")], "holds neither model/config.json"),
        ([str(qwen3)], "no llama.cpp route for qwen3"),
        ([str(qwen3), "--dtype", "q4_k"], "invalid choice"),
    ):
        status, err = export_cli(capsys, *args)
        errors = [line for line in err.splitlines() if line.startswith("error: ")]
        assert status == 2 and len(errors) == 1 and expected in errors[0], err
        assert "Traceback" not in err
    assert not (qwen3 / "model.gguf").exists()


def test_a_sharded_checkpoint_exports_the_same_file(llama_gguf: tuple[Path, Path], tmp_path: Path) -> None:
    """A dense checkpoint in several safetensors shards (model.safetensors.index.json) reads tensor by tensor."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model, _ = llama_gguf
    whole, sharded = tmp_path / "whole", tmp_path / "sharded"
    dense = AutoModelForCausalLM.from_config(LlamaConfig(hidden_size=64, intermediate_size=96, num_hidden_layers=3,
                                                         num_attention_heads=4, num_key_value_heads=2,
                                                         vocab_size=600))  # fmt: skip
    tokenizer = AutoTokenizer.from_pretrained(model)
    for directory, shard in ((whole, "50MB"), (sharded, "40KB")):
        dense.save_pretrained(directory, max_shard_size=shard)
        tokenizer.save_pretrained(directory)
    assert (sharded / "model.safetensors.index.json").is_file() and not (
        whole / "model.safetensors.index.json"
    ).exists()
    a, b = export_gguf(whole, tmp_path / "a.gguf"), export_gguf(sharded, tmp_path / "b.gguf")
    tensors = lambda path: {t.name: t.data.tobytes() for t in gguf.GGUFReader(path).tensors}  # noqa: E731
    assert tensors(a) == tensors(b) and len(tensors(a)) == 1 + 3 * 9 + 2
