"""LyCORIS, DoRA and PEFT adapter maths on small modules: malformed files, scales, the Kronecker forward,
hooks in the layer's dtype, and compiled blocks."""

import pytest
import torch

from acestep_worker.errors import InputError
from acestep_worker.models.compile_policy import apply_compile_policy
from acestep_worker.models.dit.model import compile_blocks
from acestep_worker.models.lora import kron, merged
from acestep_worker.models.lora.formats import normalise, read_adapter
from acestep_worker.models.lora.lycoris import dora_delta


@pytest.mark.parametrize("tensors,fragment", [
    ({"lycoris_layers_0_self_attn_q_proj.lokr_w1": torch.ones(8, 8),
      "lycoris_layers_0_self_attn_q_proj.lokr_t2": torch.ones(2, 2, 3, 3)}, "Tucker-decomposed"),
    ({"lycoris_layers_0_self_attn_q_proj.lokr_w1": torch.ones(8, 8),
      "lycoris_layers_0_self_attn_q_proj.hada_w1_a": torch.ones(8, 2)}, "mixes lokr and loha weights"),
    ({"lycoris_layers_0_self_attn_q_proj.lokr_w1": torch.ones(8, 8),
      "lycoris_layers_0_self_attn_q_proj.lokr_w2_a": torch.ones(8, 2)}, "neither lokr_w2 nor both"),
    ({"lycoris_layers_0_self_attn_q_proj.hada_w1_a": torch.ones(8, 2)}, "lacks hada_w1_b"),
])
def test_malformed_lycoris_modules_are_one_sentence(tensors, fragment):
    with pytest.raises(InputError) as err:
        normalise("loras[2]", tensors)
    assert err.value.field == "loras[2]" and fragment in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("shape", [(32, 1), (1, 64)])
def test_lycoris_dora_scale_on_either_axis(shape):
    """LyCORIS `dora_scale` [out, 1] normalises each output row, [1, in] each input column (wd_on_out False)."""
    generator = torch.Generator().manual_seed(3)
    weight = torch.randn(32, 64, generator=generator)
    down, up = torch.randn(4, 64, generator=generator), torch.randn(32, 4, generator=generator)
    scale = torch.rand(*shape, generator=generator) + 0.5
    stem = "lora_unet_layers_1_cross_attn_q_proj"
    adapter = normalise("loras[0]", {f"{stem}.lora_down.weight": down, f"{stem}.lora_up.weight": up,
                                     f"{stem}.alpha": torch.tensor(2.0), f"{stem}.dora_scale": scale})
    module = "layers.1.cross_attn.to_q"
    assert adapter.format == "kohya-dora"
    delta = dora_delta("loras[0]", "x", module, adapter.state_dict[f"transformer.{module}.lora_A.weight"],
                       adapter.state_dict[f"transformer.{module}.lora_B.weight"], adapter.magnitudes[module], weight)
    merged = weight + up @ down * (2.0 / 4)
    norm = merged.norm(dim=1 if shape[1] == 1 else 0, keepdim=True)
    torch.testing.assert_close(weight + delta, scale * merged / norm, atol=1e-5, rtol=0)


class _OneLayer(torch.nn.Module):
    """A stand-in with the DiT's module path for one q_proj (upstream names, as upstream's trainer sees them)."""

    def __init__(self):
        super().__init__()
        block = torch.nn.Module()
        block.self_attn = torch.nn.Module()
        block.self_attn.q_proj = torch.nn.Linear(64, 32, bias=False)
        self.layers = torch.nn.ModuleList([block])


@pytest.mark.parametrize("config", [
    {"peft_type": "LOKR", "r": 2, "alpha": 4},
    {"peft_type": "LOKR", "r": 2, "alpha": 3, "decompose_both": True, "decompose_factor": 4},
    {"peft_type": "LOKR", "r": 8, "alpha": 3},  # both factors full: peft still scales by alpha / r
    {"peft_type": "LOHA", "r": 3, "alpha": 5},
    {"peft_type": "LORA", "r": 4, "lora_alpha": 8, "use_dora": True},
], ids=["lokr", "lokr-both", "lokr-full", "loha", "dora"])
def test_peft_folders_load_as_peft_itself_merges_them(tmp_path, config):
    """The folder peft's save_pretrained writes, read here, gives the weights peft's merge_and_unload gives."""
    from peft import LoHaConfig, LoKrConfig, LoraConfig, get_peft_model

    kind = {"LOKR": LoKrConfig, "LOHA": LoHaConfig, "LORA": LoraConfig}[config["peft_type"]]
    options = {k: v for k, v in config.items() if k != "peft_type"}
    torch.manual_seed(5)
    model = get_peft_model(_OneLayer(), kind(target_modules=["q_proj"], **options))
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "base_layer" not in name:
                random = torch.rand_like(parameter) + 0.5 if "magnitude" in name else torch.randn_like(parameter)
                parameter.copy_(random)
    model.save_pretrained(tmp_path)
    base = model.base_model.model.layers[0].self_attn.q_proj.get_base_layer().weight.detach().clone()
    merged = model.merge_and_unload().layers[0].self_attn.q_proj.weight.detach()

    adapter = read_adapter("loras[0]", tmp_path)
    module = "layers.0.self_attn.to_q"
    if module in adapter.krons:
        delta = torch.kron(*adapter.krons[module])
    else:
        down = adapter.state_dict[f"transformer.{module}.lora_A.weight"]
        up = adapter.state_dict[f"transformer.{module}.lora_B.weight"]
        delta = up @ down
        if module in adapter.magnitudes:
            delta = dora_delta("loras[0]", "x", module, down, up, adapter.magnitudes[module], base)
    assert (merged - base).abs().max() > 0.1  # the adapter does something
    torch.testing.assert_close(base + delta, merged, atol=2e-5, rtol=0)

# -- LoKr in Kronecker form (lora/kron.py) ----------------------------------------------------------
@pytest.mark.parametrize("w1_shape,w2_shape", [((4, 8), (16, 16)), ((8, 12), (8, 8)), ((16, 2), (2, 16)),
                                               ((3, 5), (7, 2)), ((1, 6), (9, 1))])
def test_the_kronecker_forward_equals_multiplying_by_torch_kron(w1_shape, w2_shape):
    generator = torch.Generator().manual_seed(7)
    w1 = torch.randn(*w1_shape, generator=generator, dtype=torch.float64)
    w2 = torch.randn(*w2_shape, generator=generator, dtype=torch.float64)
    x = torch.randn(2, 3, w1_shape[1] * w2_shape[1], generator=generator, dtype=torch.float64)
    torch.testing.assert_close(kron.kron_apply(x, w1, w2), x @ torch.kron(w1, w2).T)


@pytest.mark.parametrize("w1_shape,w2_shape,pair_rank,expected", [
    ((32, 32), (64, 64), 2048, True),  # LyCORIS factor -1 on a 2048-wide layer, both factors whole: a dense pair
    ((32, 32), (64, 64), 32 * 8, True),  # w2 a rank-8 product: the pair is 256 wide, 5x the Kronecker cost
    ((8, 4), (16, 16), 4, False),  # both factors rank 2 (the tiny lokr-lycoris gate/up): the thin pair is cheaper
    ((8, 8), (8, 8), 16, True),  # the tiny lokr-peft: 1,024 against 2,048 multiply-adds
])
def test_the_cheaper_form_is_chosen_by_multiply_adds(w1_shape, w2_shape, pair_rank, expected):
    assert kron.prefers_kron(w1_shape, w2_shape, pair_rank) is expected


def test_the_hook_computes_in_the_layers_dtype():
    generator = torch.Generator().manual_seed(8)
    holder = torch.nn.Module()
    holder.layer = torch.nn.Linear(64, 32).to(torch.bfloat16)
    w1, w2 = torch.randn(4, 8, generator=generator), torch.randn(8, 8, generator=generator)  # float32 factors
    x = torch.randn(5, 64, generator=generator).to(torch.bfloat16)
    plain = holder.layer(x)
    assert kron.attach(holder, [({"layer": (w1, w2)}, 0.5), ({"layer": (w1, w2)}, 0)]) == 1  # scale 0: no hook
    try:
        hooked = holder.layer(x)
    finally:
        kron.detach(holder)
    assert hooked.dtype == torch.bfloat16
    expected = plain.float() + 0.5 * x.float() @ torch.kron(w1, w2).T
    torch.testing.assert_close(hooked.float(), expected, atol=0.1, rtol=0.02)
    assert torch.equal(holder.layer(x), plain)


class _Block(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.proj, self.out = torch.nn.Linear(64, 64), torch.nn.Linear(64, 64)

    def forward(self, x):
        return self.out(torch.nn.functional.gelu(self.proj(x)))


class _Blocks(torch.nn.Module):
    """Blocks of one class, as the DiT's, for compile_blocks."""

    def __init__(self, count: int = 4):
        super().__init__()
        self.layers = torch.nn.ModuleList(_Block() for _ in range(count))

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x


def test_compiled_blocks_follow_hooks_and_merges_made_after_compiling():
    graphs = []

    def count_graphs(graph, example_inputs):
        graphs.append(graph)
        return graph.forward

    torch.manual_seed(9)
    compiled, eager = _Blocks(), _Blocks()
    eager.load_state_dict(compiled.state_dict())
    apply_compile_policy()  # what an engine sets at start-up
    compile_blocks(compiled, backend=count_graphs)
    x = torch.randn(2, 7, 64)
    factors = {f"layers.{i}.proj": (torch.randn(8, 8), torch.randn(8, 8)) for i in range(4)}
    with torch.no_grad():
        plain = eager(x)
        torch.testing.assert_close(compiled(x), plain)
        for scale in (1.0, 0.5, 1.0):
            kron.attach(compiled, [(factors, scale)])
            kron.attach(eager, [(factors, scale)])
            try:
                assert (eager(x) - plain).abs().max() > 0.1  # the hooks do something
                torch.testing.assert_close(compiled(x), eager(x))
            finally:
                kron.detach(compiled)
                kron.detach(eager)
            torch.testing.assert_close(compiled(x), eager(x))
        deltas = {"layers.1.out": torch.randn(64, 64)}  # a DoRA update merged in place: weights are graph inputs
        merged.merge(compiled, [(deltas, 0.5)])
        merged.merge(eager, [(deltas, 0.5)])
        try:
            assert (eager(x) - plain).abs().max() > 0.01
            torch.testing.assert_close(compiled(x), eager(x))
        finally:
            merged.restore(compiled)
            merged.restore(eager)
        torch.testing.assert_close(compiled(x), plain)
    assert len(graphs) == 2  # one without hooks, one with; a new scale or merged weights do not recompile
