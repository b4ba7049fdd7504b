"""The webui's sampler names and schedule types, mapped to diffusers schedulers.

A scheduler is stateful (timesteps, step index, noise sampler), so every generation builds a fresh one from the
model's scheduler config instead of reusing the pipeline's instance.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field

import diffusers


@dataclass(frozen=True)
class SamplerSpec:
    name: str
    scheduler_class: str
    config_overrides: dict = field(default_factory=dict)
    aliases: tuple[str, ...] = ()


SAMPLERS: tuple[SamplerSpec, ...] = (
    SamplerSpec("Euler", "EulerDiscreteScheduler", aliases=("k_euler",)),
    SamplerSpec("Euler a", "EulerAncestralDiscreteScheduler", aliases=("k_euler_a",)),
    SamplerSpec("Heun", "HeunDiscreteScheduler", aliases=("k_heun",)),
    SamplerSpec("LMS", "LMSDiscreteScheduler", aliases=("k_lms",)),
    SamplerSpec("DPM2", "KDPM2DiscreteScheduler", aliases=("k_dpm_2",)),
    SamplerSpec("DPM2 a", "KDPM2AncestralDiscreteScheduler", aliases=("k_dpm_2_a",)),
    SamplerSpec(
        "DPM++ 2M",
        "DPMSolverMultistepScheduler",
        {"algorithm_type": "dpmsolver++", "solver_order": 2},
        aliases=("k_dpmpp_2m",),
    ),
    SamplerSpec(
        "DPM++ 2M SDE",
        "DPMSolverMultistepScheduler",
        {"algorithm_type": "sde-dpmsolver++", "solver_order": 2},
        aliases=("k_dpmpp_2m_sde",),
    ),
    SamplerSpec("DPM++ SDE", "DPMSolverSDEScheduler", aliases=("k_dpmpp_sde",)),
    SamplerSpec("DDIM", "DDIMScheduler", aliases=("ddim",)),
    SamplerSpec("PLMS", "PNDMScheduler", {"skip_prk_steps": True}, aliases=("plms",)),
    SamplerSpec("UniPC", "UniPCMultistepScheduler", aliases=("unipc",)),
    SamplerSpec("LCM", "LCMScheduler", aliases=("lcm",)),
)

# Schedule type -> the scheduler config flag that selects it ("Automatic" keeps the scheduler's own spacing).
SCHEDULE_TYPES: dict[str, str | None] = {
    "Automatic": None,
    "Karras": "use_karras_sigmas",
    "Exponential": "use_exponential_sigmas",
}

SAMPLER_NAMES: tuple[str, ...] = tuple(spec.name for spec in SAMPLERS)
_BY_NAME = {spec.name.lower(): spec for spec in SAMPLERS} | {
    alias.lower(): spec for spec in SAMPLERS for alias in spec.aliases
}


def find_sampler(name: str) -> SamplerSpec:
    """The sampler called `name` (case-insensitive, webui aliases accepted); ValueError lists the valid names."""
    spec = _BY_NAME.get(str(name).strip().lower())
    if spec is None:
        raise ValueError(f"sampler_name: unknown sampler {name!r}; valid samplers: {', '.join(SAMPLER_NAMES)}")
    return spec


def split_legacy_sampler_name(name: str) -> tuple[str, str]:
    """Old webui infotexts fold the schedule into the sampler name ("DPM++ 2M Karras")."""
    for schedule in SCHEDULE_TYPES:
        suffix = f" {schedule}"
        if schedule != "Automatic" and name.endswith(suffix) and name[: -len(suffix)].lower() in _BY_NAME:
            return name[: -len(suffix)], schedule
    return name, "Automatic"


def supported_schedule_types(sampler_name: str) -> list[str]:
    scheduler_class = getattr(diffusers, find_sampler(sampler_name).scheduler_class)
    parameters = inspect.signature(scheduler_class.__init__).parameters
    return [schedule for schedule, flag in SCHEDULE_TYPES.items() if flag is None or flag in parameters]


def check_schedule_type(sampler_name: str, schedule_type: str) -> None:
    if schedule_type not in SCHEDULE_TYPES:
        raise ValueError(f"scheduler: unknown schedule type {schedule_type!r}; valid: {', '.join(SCHEDULE_TYPES)}")
    supported = supported_schedule_types(sampler_name)
    if schedule_type not in supported:
        raise ValueError(
            f"scheduler: {schedule_type!r} is not available with sampler {sampler_name!r}; "
            f"valid for it: {', '.join(supported)}"
        )


def create_scheduler(sampler_name: str, schedule_type: str, base_config) -> diffusers.SchedulerMixin:
    """A fresh scheduler for one generation, built from the model's own scheduler config (its betas)."""
    spec = find_sampler(sampler_name)
    check_schedule_type(spec.name, schedule_type)
    overrides = dict(spec.config_overrides)
    flag = SCHEDULE_TYPES[schedule_type]
    if flag is not None:
        overrides[flag] = True
    scheduler_class = getattr(diffusers, spec.scheduler_class)
    # Drop options of the model's own scheduler class that this class does not take (diffusers warns about them).
    accepted = inspect.signature(scheduler_class.__init__).parameters
    config = {key: value for key, value in dict(base_config).items() if key in accepted or key.startswith("_")}
    return scheduler_class.from_config(config, **overrides)
