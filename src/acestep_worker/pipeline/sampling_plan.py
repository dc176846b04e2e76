"""From a request to the sampler's schedule and options under one DiT's rules."""

from __future__ import annotations

from ..models.dit.dcw import DCW
from ..models.dit.flow_edit import edit_window
from ..models.dit.sampler import SamplingPlan
from ..models.dit.schedules import base_timesteps, snap_turbo_shift, turbo_timesteps
from ..models.variants import Variant
from ..schema.request import GenerationRequest
from ..schema.task_types import flow_edits


def sampling_plan(request: GenerationRequest, steps: int, variant: Variant) -> tuple[SamplingPlan, dict]:
    """The sampling plan for `request`'s `steps` under the rules of `variant`, and what it resolved to.

    Omitted values take the variant's defaults. Turbo models are guidance-distilled: guidance, the
    CFG interval and ADG do not apply to them and are reported as unused rather than rejected, so
    clients that always send upstream's defaults keep working. DCW defaults to on for turbo
    models and off for base/sft, as newest upstream; SDE, Heun and the velocity options apply to both
    (Heun with SDE takes Euler steps, as upstream falls back; reported unused, task_types.replaced_fields).
    Flow-edit samples as upstream's flow-edit sampler does: Euler ODE steps, APG, no DCW (what it
    leaves out is reported unused, task_types._flow_edit_replaced).
    """
    rules = variant.rules
    flow = flow_edits(request)
    shift = request.shift if request.shift is not None else rules.default_shift
    dcw_on = request.dcw_enabled if request.dcw_enabled is not None else rules.kind == "turbo"
    dcw_on = dcw_on and not flow
    dcw = DCW(request.dcw_mode, request.dcw_scaler, request.dcw_high_scaler, request.dcw_wavelet) if dcw_on else None
    options = dict(kind=rules.kind, infer_method="ode" if flow else request.infer_method, dcw=dcw,
                   velocity_norm_threshold=request.velocity_norm_threshold,
                   velocity_ema_factor=request.velocity_ema_factor,
                   sampler_mode="euler" if flow else request.sampler_mode)
    if rules.kind == "turbo":
        shift = snap_turbo_shift(shift)
        timesteps = turbo_timesteps(shift, steps, request.timesteps)
        plan = SamplingPlan(timesteps, **options)
        guidance = None
    else:
        guidance = request.guidance_scale if request.guidance_scale is not None else rules.default_guidance
        plan = SamplingPlan(base_timesteps(steps, shift), guidance_scale=guidance,
                            cfg_interval=(request.cfg_interval_start, request.cfg_interval_end),
                            guidance="adg" if request.use_adg and not flow else "apg", **options)
    used = {"inference_steps": plan.steps, "shift": shift, "guidance_scale": guidance,
            "timesteps": [round(t, 6) for t in plan.timesteps.tolist()],
            "guidance": plan.guidance if plan.uses_cfg else None, "infer_method": plan.infer_method,
            "sampler_mode": "heun" if plan.heun else "euler",
            "dcw": ({"mode": dcw.mode, "scaler": dcw.scaler, "high_scaler": dcw.high_scaler,
                     "wavelet": dcw.wavelet} if dcw else None)}
    if flow:
        used["flow_edit"] = {"n_min": request.flow_edit_n_min, "n_max": request.flow_edit_n_max,
                             "n_avg": request.flow_edit_n_avg,
                             "window_steps": list(edit_window(plan.steps, request.flow_edit_n_min,
                                                              request.flow_edit_n_max))}
    return plan, used
