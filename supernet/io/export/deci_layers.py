"""How each pruned decoder layer is written for llama.cpp's ``deci`` graph, which builds every layer at
its own width from the per-layer arrays ``head_count``, ``head_count_kv`` and ``feed_forward_length``.

Rules read off llama.cpp's ``src/models/deci.cpp`` and ``llama-model.cpp`` (the graph as of
llama-cpp-python 0.3.36) and checked against it by tests/supernet/export/test_gguf_llama_cpp.py:

- a layer with 0 heads and 0 K/V heads skips its attention sub-block exactly (no norm, no bias);
- a layer with attention and ``feed_forward_length`` 0 *loses its attention output* (the graph
  ``continue``\\ s before the residual add), and a layer without an MLP adds no MLP bias;
- layer 0's head count is read as the model's: with 0 heads llama.cpp takes the model for one without
  attention and derives a head size of 0 for every layer.

So a sub-block strata removed is written as a *stub* where one of those would change the output: one
zero query head over one zero K/V head (the attention's output is then exactly its ``o_proj`` bias, or
zero), or one MLP channel with a zero down projection (exactly its ``down_proj`` bias, or zero). A stub
costs ``4 * head_dim * hidden`` (attention) or ``3 * hidden`` (MLP) parameters in the GGUF file.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DeciLayer:
    """One decoder layer's widths as written to the GGUF file."""

    heads: int  # query heads (``head_count[i]``)
    kv_heads: int  # K/V heads (``head_count_kv[i]``)
    ff: int  # MLP channels (``feed_forward_length[i]``)
    attn_stub: bool  # the attention was removed; written as one zero head
    mlp_stub: bool  # the MLP was removed; written as one zero channel


def deci_layer(index: int, shape: dict) -> DeciLayer:
    """The deci widths of layer ``index`` with strata's ``shape`` (a ``layer_shapes`` entry: heads, K/V
    heads, MLP channels, and whether ``o_proj`` / ``down_proj`` carry a bias)."""
    heads, kv_heads, ff = shape["num_attention_heads"], shape["num_key_value_heads"], shape["intermediate_size"]
    attn_stub = heads == 0 and (index == 0 or bool(shape.get("attn_out_bias")))
    if attn_stub:
        heads, kv_heads = 1, 1
    elif heads == 0:
        kv_heads = 0
    mlp_stub = ff == 0 and (heads > 0 or bool(shape.get("mlp_out_bias")))
    return DeciLayer(heads=heads, kv_heads=kv_heads, ff=1 if mlp_stub else ff, attn_stub=attn_stub,
                     mlp_stub=mlp_stub)  # fmt: skip


def uniform_shapes(config: dict) -> list[dict]:
    """``layer_shapes`` of a dense model (every layer at the config's widths), so a model strata never
    pruned (the dense baseline) exports the same way."""
    heads = config["num_attention_heads"]
    shape = {
        "num_attention_heads": heads,
        "num_key_value_heads": config.get("num_key_value_heads") or heads,
        "intermediate_size": config["intermediate_size"],
        "attn_out_bias": False,
        "mlp_out_bias": False,
    }
    return [dict(shape) for _ in range(config["num_hidden_layers"])]
