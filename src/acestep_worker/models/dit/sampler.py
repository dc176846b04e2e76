"""The flow-matching sampling loop shared by the turbo and base/sft models.

The loop keeps the latent in float32 whatever the model dtype (the DiT runs in bf16 on GPUs), takes
Euler steps x <- x - v * (t - t_next) down to t = 0 (or Heun steps, which average v with a second
prediction at t_next; or, with SDE, re-noises the step's clean estimate), and for base/sft models
combines conditional and unconditional predictions of one doubled batch inside the CFG interval.
Editing runs (`Edit`) add repaint injection and blending, a cover-to-text2music condition switch and a
partial start; DCW corrects each step. A flow-edit (`flow_edit.py`) owns the steps up to the end of its
window and hands the loop its target trajectory.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Callable, Literal

import torch

from .condition_cache import reusing_condition_projections
from .conditioning import Conditions
from .dcw import DCW
from .flow_edit import Branch, FlowEditRun
from .guidance import ADG, APG, cap_velocity, plain_cfg, smooth_velocity
from .model import DiTModel
from .sampler_edits import Edit


@dataclass(frozen=True)
class SamplingPlan:
    """How to sample: the timesteps (float32, final 0 implicit), the guidance rule and options.

    CFG runs when `guidance_scale > 1`; it is applied on the steps whose t lies inside
    `cfg_interval` (inclusive; compared in float32 as upstream's generate_audio does, in float64 in a
    flow-edit as upstream's flow-edit loop does) and the conditional prediction is used on the others.
    `kind` matters for SDE, Heun and repaint, where upstream's two samplers differ. `sampler_mode`
    "heun" applies to ODE steps only (with SDE upstream falls back to Euler, and so do we).
    """

    timesteps: torch.Tensor
    guidance_scale: float = 1.0
    cfg_interval: tuple[float, float] = (0.0, 1.0)
    guidance: Literal["apg", "adg"] = "apg"
    kind: Literal["turbo", "base"] = "turbo"
    infer_method: Literal["ode", "sde"] = "ode"
    dcw: DCW | None = None
    velocity_norm_threshold: float = 0.0  # > 0: cap |v| at threshold * |x| per item
    velocity_ema_factor: float = 0.0  # > 0: v <- (1 - f) v + f v_previous
    sampler_mode: Literal["euler", "heun"] = "euler"

    @property
    def uses_cfg(self) -> bool:
        return self.guidance_scale > 1.0

    @property
    def heun(self) -> bool:
        return self.sampler_mode == "heun" and self.infer_method == "ode"

    @property
    def steps(self) -> int:
        return int(self.timesteps.numel())


@dataclass
class DecoderCall:
    """One DiT evaluation, recorded for parity checks: inputs and raw output, before guidance."""

    timestep: torch.Tensor  # [decoder_batch]
    hidden_states: torch.Tensor  # [decoder_batch, T, C]
    velocity: torch.Tensor  # [decoder_batch, T, C]
    encoder_hidden_states: torch.Tensor  # [decoder_batch, L, hidden]
    context_latents: torch.Tensor  # [decoder_batch, T, 2C]


@dataclass
class SamplerTrace:
    """What a parity check compares beyond the result."""

    calls: list[DecoderCall] = field(default_factory=list)
    injections: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)  # (t_next, x)
    before_blend: torch.Tensor | None = None


@dataclass
class SamplerHooks:
    on_step: Callable[[int, int], None] | None = None  # (steps done, total); may raise to stop
    trace: SamplerTrace | None = None
    step_noise: Callable[[], torch.Tensor] | None = None  # fresh [B, T, C] noise for SDE steps


def _in_interval(t: torch.Tensor, interval: tuple[float, float], in_float64: bool = False) -> bool:
    """Whether the float32 `t` lies in `interval`. Upstream's generate_audio compares the tensor, so the bounds
    round to float32 first; its flow-edit loop compares float(t), so they do not: t = float32(0.8) is inside
    [0.3, 0.8] for the one and outside for the other."""
    if in_float64:
        return interval[0] <= float(t) <= interval[1]
    return bool((t >= interval[0]) & (t <= interval[1]))


class _Condition:
    """Condition tensors as the decoder takes them (model dtype, doubled for CFG)."""

    def __init__(self, dit: DiTModel, conditions: Conditions, cfg: bool):
        dtype = dit.dtype
        self.encoder_states = conditions.encoder_hidden_states.to(dtype)
        self.context = conditions.context_latents.to(dtype)
        if cfg:
            null = dit.null_condition_emb.to(dtype).expand_as(self.encoder_states)
            self.encoder_states = torch.cat([self.encoder_states, null])
            self.context = torch.cat([self.context, self.context])


@reusing_condition_projections  # the conditions are fixed per call: project them once, not per step
@torch.no_grad()
def sample(dit: DiTModel, conditions: Conditions, noise: torch.Tensor, plan: SamplingPlan,
           hooks: SamplerHooks | None = None, edit: Edit | None = None) -> torch.Tensor:
    """Integrate from `noise` [B, T, C] at t = timesteps[0] to a clean latent [B, T, C] (float32)."""
    hooks, edit = hooks or SamplerHooks(), edit or Edit()
    trace, repaint, switch = hooks.trace, edit.repaint, edit.cover_switch
    device = dit.device
    target = Branch(_Condition(dit, conditions, plan.uses_cfg), _guide(plan))
    flow = _flow_edit_run(dit, plan, edit)

    timesteps = plan.timesteps.to(device=device, dtype=torch.float32)
    next_timesteps = torch.cat([timesteps[1:], timesteps.new_zeros(1)])
    # What the loop decides per step is read from the CPU copy, so no step waits on the device.
    host_times = plan.timesteps.to(dtype=torch.float32, device="cpu")
    guided_steps = [plan.uses_cfg and _in_interval(t, plan.cfg_interval, flow is not None) for t in host_times]
    correctors = _correctors(plan, host_times)
    host_times = host_times.tolist()
    noise = noise.to(device=device, dtype=torch.float32)
    x = noise if edit.start is None else edit.start.to(device=device, dtype=torch.float32)
    x = x if flow is None else flow.initial()
    predict = functools.partial(_predict, dit, plan, trace)
    previous_v = None
    for step, (t, t_next) in enumerate(zip(timesteps, next_timesteps)):
        if flow is not None and flow.owns(step):
            if step >= flow.start:  # the edit window; before it, nothing happens
                x, previous_v = flow.edit_step(x, t, t_next, host_times[step], guided_steps[step], target, previous_v,
                                               predict, plan)
            if hooks.on_step is not None:
                hooks.on_step(step + 1, plan.steps)
            continue
        if flow is not None and step == flow.end:
            x = flow.enter_target(x, host_times[step])
        if switch is not None and step == switch.at_step:
            target = Branch(_Condition(dit, switch.conditions, plan.uses_cfg), target.guide)
        velocity, _ = predict(x, t, target, guided_steps[step])
        velocity = smooth_velocity(cap_velocity(velocity, x, plan.velocity_norm_threshold), previous_v,
                                   plan.velocity_ema_factor)
        x0 = x - velocity * t  # from the first prediction, also on Heun steps (DCW reads it), as upstream
        last = step == plan.steps - 1
        if plan.infer_method == "sde" and not last:
            # Upstream's base sampler re-noises to the UNshifted schedule; turbo to its own.
            target_t = 1.0 - (step + 1) / plan.steps if plan.kind == "base" else t_next
            x_next = target_t * hooks.step_noise().to(x0) + (1 - target_t) * x0
        else:
            if correctors[step] is not None:  # Heun: the mean with a second prediction at t_next
                velocity = _heun_velocity(predict, plan, x, velocity, t, t_next, target.condition, correctors[step])
            x_next = x - velocity * (t - t_next)
        previous_v = velocity  # on a Heun step the averaged velocity, which the next step's EMA reads
        if plan.dcw is not None and plan.dcw.active:
            x_next = plan.dcw(x_next, x0, host_times[step])
        x = x_next
        if repaint is not None and step < repaint.injection_steps and not (last and plan.kind == "turbo"):
            x = repaint.inject(x, noise, t_next)
            if trace is not None:
                trace.injections.append((t_next.cpu(), x.cpu()))
        if hooks.on_step is not None:
            hooks.on_step(step + 1, plan.steps)
    if repaint is not None:
        if trace is not None:
            trace.before_blend = x.cpu()
        x = repaint.blend(x)
    return x


def _correctors(plan: SamplingPlan, times: torch.Tensor) -> list[tuple[bool, object] | None]:
    """Per step, how its Heun corrector at t_next is guided: (inside the CFG interval at t_next, the rule),
    or None where the step takes no corrector (Euler, SDE, and turbo's last step, which jumps to the clean
    estimate as upstream's turbo sampler does; base/sft also correct the last step, at t_next = 0).

    The corrector is guided by plain CFG, so that APG's momentum advances once per step, not twice; ADG
    stays ADG except at t_next = 0, where its division by t would fail, as upstream's base sampler."""
    if not plan.heun:
        return [None] * plan.steps
    next_times = torch.cat([times[1:], times.new_zeros(1)])
    out = []
    for step, t_next in enumerate(next_times):
        if plan.kind == "turbo" and step == plan.steps - 1:
            out.append(None)
            continue
        guide = ADG() if plan.guidance == "adg" and float(t_next) > 0 else plain_cfg
        out.append((plan.uses_cfg and _in_interval(t_next, plan.cfg_interval), guide if plan.uses_cfg else None))
    return out


def _heun_velocity(predict: Callable, plan: SamplingPlan, x: torch.Tensor, velocity: torch.Tensor, t: torch.Tensor,
                   t_next: torch.Tensor, condition: _Condition, corrector: tuple[bool, object]) -> torch.Tensor:
    """Heun's averaged velocity: predict x at t_next with an Euler step, evaluate the DiT there (a second
    decoder call), cap it against the predicted x, pull it toward this step's velocity by the EMA factor, and
    take the mean of the two (the trapezoidal rule)."""
    guided, guide = corrector
    predicted = x - velocity * (t - t_next)
    corrected, _ = predict(predicted, t_next, Branch(condition, guide), guided)
    corrected = cap_velocity(corrected, predicted, plan.velocity_norm_threshold)
    corrected = smooth_velocity(corrected, velocity, plan.velocity_ema_factor)
    return 0.5 * (velocity + corrected)


def _flow_edit_run(dit: DiTModel, plan: SamplingPlan, edit: Edit) -> FlowEditRun | None:
    """The flow-edit's state for this run, its source branch with its own guidance; None without one."""
    if edit.flow_edit is None:
        return None
    if plan.heun:
        raise ValueError("flow-edit takes Euler steps, as upstream's flow-edit sampler forces; not Heun")
    if plan.uses_cfg and plan.guidance != "apg":
        raise ValueError("flow-edit is guided by APG, as upstream's flow-edit sampler is; not by ADG")
    source = Branch(_Condition(dit, edit.flow_edit.source_conditions, plan.uses_cfg), _guide(plan))
    return FlowEditRun(edit.flow_edit, plan.steps, source, dit.device)


def _guide(plan: SamplingPlan) -> ADG | APG | None:
    """A fresh guidance rule (its momentum lives for one trajectory), or None without CFG."""
    return (ADG() if plan.guidance == "adg" else APG()) if plan.uses_cfg else None


def _predict(dit: DiTModel, plan: SamplingPlan, trace: SamplerTrace | None, x: torch.Tensor, t: torch.Tensor,
             branch: Branch, guided: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One DiT evaluation of `x` [B, T, C] at `t` under `branch`'s condition, combined by its guidance
    (the conditional prediction outside the CFG interval). Returns (velocity, v_cond - v_uncond on a
    guided step, else None)."""
    condition, dtype = branch.condition, dit.dtype
    x_in = torch.cat([x, x]) if plan.uses_cfg else x
    t_in = t.expand(x_in.shape[0]).to(dtype)
    velocity = dit.transformer(x_in.to(dtype), t_in, t_in, condition.encoder_states, condition.context,
                               return_dict=False)[0].float()
    if trace is not None:
        trace.calls.append(DecoderCall(t_in.float().cpu(), x_in.float().cpu(), velocity.cpu(),
                                       condition.encoder_states.float().cpu(), condition.context.float().cpu()))
    if not plan.uses_cfg:
        return velocity, None
    v_cond, v_uncond = velocity.chunk(2)
    if not guided:
        return v_cond, None
    return branch.guide(v_cond, v_uncond, plan.guidance_scale, x=x, t=t), v_cond - v_uncond
