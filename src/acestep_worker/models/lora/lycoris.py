"""LoKr, LoHa (LyCORIS) and DoRA adapters, rewritten as exact LoRA pairs for one Linear layer.

Why a rewrite instead of peft's own LoKr/LoHa layers: peft builds those layers from its config
(its own factorisation of each dimension and rank thresholds), so a LyCORIS file whose factors were
chosen differently (`factor`, `full_matrix`, `unbalanced_factorization`) would not fit them; and one
model holding LoRA, LoKr and LoHa layers side by side through diffusers' adapter switching is
untested ground. Every such update is, exactly, a product `up @ down` of two matrices, so each
adapter enters the DiT as a plain LoRA pair (or, for LoKr, its own Kronecker forward, below) and
keeps everything the LoRA path already does: per-adapter scales, several adapters at once (of any
kind), nothing active after a job, the LRU.

    LoKr   ΔW = s · kron(w1, w2)             w1 = w1_a @ w1_b or full, w2 = w2_a @ w2_b or full
           kron(a1 @ b1, a2 @ b2) = kron(a1, a2) @ kron(b1, b2)   (mixed-product rule; a full
           factor F is F @ I or I @ F), so the pair has rank rank(w1) · rank(w2).
    LoHa   ΔW = s · (w1_a @ w1_b) ⊙ (w2_a @ w2_b)
           = U @ V with U[:, i·r+j] = w1_a[:, i] ⊙ w2_a[:, j] and V[i·r+j] = w1_b[i] ⊙ w2_b[j],
           rank r1 · r2.
    DoRA   W' = m ⊙ (W + ΔW) / ‖W + ΔW‖, the norm taken per output row (peft's
           `lora_magnitude_vector` [out], LyCORIS `dora_scale` [out, 1]) or per input column
           (LyCORIS `dora_scale` [1, in], `wd_on_out=False`). It depends on the base weight W, so
           it is resolved against the DiT at load time into ΔW = W' - W (`dora_delta`), which a
           job adds into the weights and takes out again (`merged`): a dense pair would cost
           twice a square layer's multiply-adds at every step. A request's `scale` s gives
           W + s · (W' - W) (0 = the base model, 1 = the adapter, as ComfyUI's strength; peft
           puts its scale inside the norm instead).

When a pair's rank would reach min(out, in), the dense ΔW with an identity is smaller; but a dense
pair costs rank·(in + out) multiply-adds per token, twice a square layer's own. So a LoKr module
is a pair only when that is cheaper than its Kronecker form (`kron`: ΔW @ x = vec(w1 @ X @ w2ᵀ),
o1·i1·i2 + o1·o2·i2 per token); otherwise `lokr_update` keeps w1 (scaled) and w2 and the layer gets
a forward hook for the job. With full factors (LyCORIS' usual case, see README) the hook wins by
far; with two thin factorised ones the pair does. LoHa stays a pair (dense when that is smaller). Scaling
(`s`) follows the writer: LyCORIS files alpha / rank, where the rank is that of the factorised
w1 (else w2) and is 1 when both are full; PEFT folders alpha / r from adapter_config.json. The
training-only parts (rank dropout, module dropout, LyCORIS' `use_scalar`, which its writer folds
into w1) do not exist at inference. Tucker (`*_t1`/`*_t2`) factors only occur on convolutions,
which the DiT's adapted layers are not.
"""

from __future__ import annotations

import torch

from ...errors import InputError, echo
from . import kron
from .spec import check_finite

LOKR_PARTS = ("lokr_w1", "lokr_w1_a", "lokr_w1_b", "lokr_w2", "lokr_w2_a", "lokr_w2_b")
LOHA_PARTS = ("hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b")
TUCKER_PARTS = ("lokr_t1", "lokr_t2", "hada_t1", "hada_t2")
MAGNITUDE_PARTS = ("dora_scale", "lora_magnitude_vector")
# The largest layer an update may claim, checked from the factors' shapes before any product is formed
# (a LoHa or LoKr file of a few MB can describe a dense update of terabytes); the DiT's largest Linear
# has 2048 x 6144 = 12.6 M weights.
MAX_LAYER_WEIGHTS = 1 << 26


def family(field: str, module: str, parts: dict[str, torch.Tensor]) -> str:
    """"lora", "lokr" or "loha" for one module's tensors; InputError for anything else."""
    if any(part in parts for part in TUCKER_PARTS):
        raise InputError(field, f"{field}: module {module} uses Tucker-decomposed LyCORIS factors, which exist for "
                                "convolutions only; this DiT's adapters are on Linear layers")
    kinds = [name for name, names in (("lora", ("A", "B")), ("lokr", LOKR_PARTS), ("loha", LOHA_PARTS))
             if any(part in parts for part in names)]
    if len(kinds) != 1:
        raise InputError(field, f"{field}: module {module} " + (f"mixes {' and '.join(kinds)} weights" if kinds else
                                "has no adapter weights (only alpha or a magnitude)"))
    return kinds[0]


def lokr_update(field: str, module: str, parts: dict[str, torch.Tensor], scaling: float | None,
                kron_forward: bool = True) -> tuple[str, tuple[torch.Tensor, torch.Tensor]]:
    """("kron", (w1 · s, w2)) or ("pair", (down, up)): whichever costs fewer multiply-adds per token
    (`kron.prefers_kron`); `kron_forward` False always gives the pair. `scaling` None = the LyCORIS rule."""
    w1_a, w1_b = _factors(field, module, parts, "lokr_w1")
    w2_a, w2_b = _factors(field, module, parts, "lokr_w2")
    if scaling is None:
        factorised = next((parts[p] for p in ("lokr_w1_a", "lokr_w2_a") if p in parts), None)
        scaling = 1.0 if factorised is None else _lycoris_scaling(parts, factorised.shape[1])
    w1_shape, w2_shape = (w1_a.shape[0], w1_b.shape[1]), (w2_a.shape[0], w2_b.shape[1])
    out_features, in_features = w1_shape[0] * w2_shape[0], w1_shape[1] * w2_shape[1]
    check_layer(field, module, out_features, in_features)
    pair_rank = min(w1_a.shape[1] * w2_a.shape[1], out_features, in_features)  # as `compact` leaves it
    if kron_forward and kron.prefers_kron(w1_shape, w2_shape, pair_rank):
        return "kron", ((w1_a @ w1_b * scaling).contiguous(), (w2_a @ w2_b).contiguous())
    if w1_a.shape[1] * w2_a.shape[1] > min(out_features, in_features):  # the dense ΔW, never the wider pair
        return "pair", _dense_pair(torch.kron(w1_a @ w1_b, w2_a @ w2_b) * scaling)
    return "pair", (torch.kron(w1_b, w2_b), torch.kron(w1_a, w2_a) * scaling)


def loha_pair(field: str, module: str, parts: dict[str, torch.Tensor],
              scaling: float | None) -> tuple[torch.Tensor, torch.Tensor]:
    missing = [part for part in LOHA_PARTS if part not in parts]
    if missing:
        raise InputError(field, f"{field}: LoHa module {module} lacks {', '.join(missing)}")
    a1, b1, a2, b2 = (parts[part].float() for part in LOHA_PARTS)
    _chain(field, module, "hada_w1", a1, b1)
    _chain(field, module, "hada_w2", a2, b2)
    if a1.shape[0] != a2.shape[0] or b1.shape[1] != b2.shape[1]:
        raise InputError(field, f"{field}: LoHa module {module} has halves of shapes {(a1.shape[0], b1.shape[1])} and "
                                f"{(a2.shape[0], b2.shape[1])}, which cannot be multiplied elementwise")
    check_layer(field, module, a1.shape[0], b1.shape[1])
    rank = b1.shape[0]
    if scaling is None:
        scaling = _lycoris_scaling(parts, rank)
    if a1.shape[1] * a2.shape[1] > min(a1.shape[0], b1.shape[1]):  # the dense ΔW, never the wider pair
        return _dense_pair((a1 @ b1) * (a2 @ b2) * scaling)
    up = (a1[:, :, None] * a2[:, None, :]).reshape(a1.shape[0], -1)  # [out, r1 * r2]
    down = (b1[:, None, :] * b2[None, :, :]).reshape(-1, b1.shape[1])  # [r1 * r2, in]
    return down, up * scaling


def check_layer(field: str, module: str, out_features: int, in_features: int) -> None:
    """Refuse an update for a layer larger than any this server's DiTs have, before computing it."""
    if out_features * in_features > MAX_LAYER_WEIGHTS:
        raise InputError(field, f"{field}: module {echo(module, 80)} describes an update of {out_features} x "
                                f"{in_features}, larger than any layer of the DiT")


def compact(down: torch.Tensor, up: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The same product with rank at most min(out, in): past that, the dense ΔW and an identity."""
    out_features, in_features = up.shape[0], down.shape[1]
    if down.shape[0] <= min(out_features, in_features):
        return down, up
    return _dense_pair(up @ down)


def magnitude_of(field: str, module: str, parts: dict[str, torch.Tensor]) -> torch.Tensor | None:
    """DoRA's magnitude as [out, 1] (per output row) or [1, in] (per input column), or None."""
    if "lora_magnitude_vector" in parts:
        return parts["lora_magnitude_vector"].float().reshape(-1, 1)
    if "dora_scale" not in parts:
        return None
    scale = parts["dora_scale"].float()
    if scale.dim() != 2 or 1 not in scale.shape:
        raise InputError(field, f"{field}: module {module} has a dora_scale of shape {tuple(scale.shape)}; a Linear "
                                "layer's is [out, 1] or [1, in]")
    return scale


def dora_delta(field: str, label: str, module: str, down: torch.Tensor, up: torch.Tensor, magnitude: torch.Tensor,
               weight: torch.Tensor) -> torch.Tensor:
    """W' - W [out, in] for DoRA's W' = m ⊙ (W + up @ down) / ‖W + up @ down‖ (see module docstring)."""
    base = weight.detach().float()
    merged = base + up.to(base.device) @ down.to(base.device)
    per_output = magnitude.shape == (base.shape[0], 1)
    if not per_output and magnitude.shape != (1, base.shape[1]):
        raise InputError(field, f"{field} ({label}): the DoRA magnitude of {module} has shape "
                                f"{tuple(magnitude.shape)}, the layer is {tuple(base.shape)}")
    norm = merged.norm(dim=1, keepdim=True) if per_output else merged.norm(dim=0, keepdim=True)
    return check_finite(field, module, merged * (magnitude.to(base.device) / norm) - base)


def _dense_pair(delta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    out_features, in_features = delta.shape
    if out_features <= in_features:
        return delta.contiguous(), torch.eye(out_features, dtype=delta.dtype, device=delta.device)
    return torch.eye(in_features, dtype=delta.dtype, device=delta.device), delta.contiguous()


def _factors(field: str, module: str, parts: dict[str, torch.Tensor], stem: str) -> tuple[torch.Tensor, torch.Tensor]:
    """One LoKr factor as (a, b) with factor = a @ b: a full one F is (F, I) or (I, F), whichever is thinner."""
    if stem in parts:
        full = parts[stem].float()
        if full.dim() != 2:
            raise InputError(field, f"{field}: module {module} has a {stem} of shape {tuple(full.shape)}; a Linear "
                                    "layer's LoKr factors are matrices")
        rows, cols = full.shape
        return (torch.eye(rows), full) if rows < cols else (full, torch.eye(cols))
    if f"{stem}_a" not in parts or f"{stem}_b" not in parts:
        raise InputError(field, f"{field}: LoKr module {module} has neither {stem} nor both {stem}_a and {stem}_b")
    a, b = parts[f"{stem}_a"].float(), parts[f"{stem}_b"].float()
    _chain(field, module, stem, a, b)
    return a, b


def _chain(field: str, module: str, stem: str, a: torch.Tensor, b: torch.Tensor) -> None:
    if a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[0]:
        raise InputError(field, f"{field}: module {module} has {stem}_a/{stem}_b of shapes {tuple(a.shape)} and "
                                f"{tuple(b.shape)}, which do not multiply")


def _lycoris_scaling(parts: dict[str, torch.Tensor], rank: int) -> float:
    # LyCORIS treats a missing or zero alpha as alpha = rank (scaling 1). `alpha` is one finite number and
    # `rank` at least 1: spec.check_tensors refused anything else.
    alpha = float(parts["alpha"]) if "alpha" in parts else 0.0
    return alpha / rank if alpha else 1.0
