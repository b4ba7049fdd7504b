"""The webui's sampler names and schedule types, mapped to diffusers schedulers.

A scheduler is stateful (timesteps, step index, noise sampler), so every generation builds a fresh one from the
model's scheduler config instead of reusing the pipeline's instance.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import diffusers

# What a sampler's diffusers class takes (test_samplers checks it against the class's signature), so listing the
# samplers and checking a job need not load diffusers and torch: `serena samplers` starts in a fraction of a second.
ALL_SCHEDULES = ("Automatic", "Karras", "Exponential")
AUTOMATIC_ONLY = ("Automatic",)


@dataclass(frozen=True)
class SamplerSpec:
    name: str
    scheduler_class: str
    config_overrides: dict = field(default_factory=dict)
    aliases: tuple[str, ...] = ()
    schedule_types: tuple[str, ...] = ALL_SCHEDULES


SAMPLERS: tuple[SamplerSpec, ...] = (
    SamplerSpec("Euler", "EulerDiscreteScheduler", aliases=("k_euler",)),
    SamplerSpec(
        "Euler a",
        "EulerAncestralDiscreteScheduler",
        aliases=("k_euler_a", "k_euler_ancestral"),
        schedule_types=AUTOMATIC_ONLY,
    ),
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
    SamplerSpec("DDIM", "DDIMScheduler", aliases=("ddim",), schedule_types=AUTOMATIC_ONLY),
    SamplerSpec("PLMS", "PNDMScheduler", {"skip_prk_steps": True}, aliases=("plms",), schedule_types=AUTOMATIC_ONLY),
    SamplerSpec("UniPC", "UniPCMultistepScheduler", aliases=("unipc",)),
    SamplerSpec("LCM", "LCMScheduler", aliases=("k_lcm",), schedule_types=AUTOMATIC_ONLY),
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
_SCHEDULES_BY_NAME = {schedule.lower(): schedule for schedule in SCHEDULE_TYPES}


def find_sampler(name: str) -> SamplerSpec:
    """The sampler called `name` (case-insensitive, webui aliases accepted); ValueError lists the valid names."""
    spec = _BY_NAME.get(str(name).strip().lower())
    if spec is not None:
        return spec
    legacy = _split_legacy_name(str(name).strip())
    if legacy is not None:  # canonical_names leaves it only when `scheduler` names another schedule type
        raise ValueError(
            f"sampler_name: {name!r} is sampler {legacy[0]!r} with schedule type {legacy[1]!r}, but scheduler names "
            f"another; give sampler_name {legacy[0]!r} and the scheduler you want"
        )
    raise ValueError(f"sampler_name: unknown sampler {name!r}; valid samplers: {', '.join(SAMPLER_NAMES)}")


def find_schedule_type(name: str) -> str:
    """The schedule type called `name` (case-insensitive: the webui API sends "karras"); ValueError lists the valid."""
    schedule = _SCHEDULES_BY_NAME.get(str(name).strip().lower())
    if schedule is None:
        raise unknown_schedule_type(name)
    return schedule


def unknown_schedule_type(name) -> ValueError:
    return ValueError(f"scheduler: unknown schedule type {name!r}; valid: {', '.join(SCHEDULE_TYPES)}")


def _split_legacy_name(name: str) -> tuple[str, str] | None:
    """Old webui names fold the schedule type into the sampler's ("DPM++ 2M Karras"): (sampler, schedule), or None."""
    for schedule in SCHEDULE_TYPES:
        suffix = f" {schedule}".lower()
        if schedule != "Automatic" and name.lower().endswith(suffix) and name[: -len(suffix)].lower() in _BY_NAME:
            return name[: -len(suffix)], schedule
    return None


def canonical_names(sampler_name, schedule_type) -> tuple:
    """The webui's own names for a sampler and schedule type as given: aliases and case resolved ("k_euler_a" ->
    "Euler a", "karras" -> "Karras"), a legacy "DPM++ 2M Karras" read as "DPM++ 2M" with schedule type "Karras".

    Names it does not know (and a legacy name whose schedule type contradicts `schedule_type`) are returned as
    given, for validation to refuse with the valid names.
    """
    if not isinstance(sampler_name, str) or not isinstance(schedule_type, str):
        return sampler_name, schedule_type
    schedule_type = _SCHEDULES_BY_NAME.get(schedule_type.strip().lower(), schedule_type)
    legacy = _split_legacy_name(sampler_name.strip())
    if legacy is not None and schedule_type in ("Automatic", legacy[1]):
        sampler_name, schedule_type = legacy
    spec = _BY_NAME.get(sampler_name.strip().lower())
    return (spec.name if spec else sampler_name), schedule_type


def supported_schedule_types(sampler_name: str) -> list[str]:
    return list(find_sampler(sampler_name).schedule_types)


def scheduler_class(spec: SamplerSpec) -> type:
    return getattr(importlib.import_module("diffusers"), spec.scheduler_class)


def check_schedule_type(sampler_name: str, schedule_type: str, spec: SamplerSpec | None = None) -> None:
    if schedule_type not in SCHEDULE_TYPES:
        raise unknown_schedule_type(schedule_type)
    supported = (spec or find_sampler(sampler_name)).schedule_types
    if schedule_type not in supported:
        raise ValueError(
            f"scheduler: {schedule_type!r} is not available with sampler {sampler_name!r}; "
            f"valid for it: {', '.join(supported)}"
        )


# The samplers that apply to flow-matching models (SD 3, FLUX), as the webui family names them: Euler on the flow's
# own schedule (with the model's shift), its ancestral form (a fresh noise draw at each step, diffusers' stochastic
# sampling), and the multistep solvers that diffusers runs on flow sigmas. The others assume a noise-predicting model.
FLOW_SAMPLERS: dict[str, tuple[str, dict]] = {
    "Euler": ("FlowMatchEulerDiscreteScheduler", {}),
    "Euler a": ("FlowMatchEulerDiscreteScheduler", {"stochastic_sampling": True}),
    "DPM++ 2M": (
        "DPMSolverMultistepScheduler",
        {
            "algorithm_type": "dpmsolver++",
            "solver_order": 2,
            "use_flow_sigmas": True,
            "prediction_type": "flow_prediction",
        },
    ),
    "UniPC": ("UniPCMultistepScheduler", {"use_flow_sigmas": True, "prediction_type": "flow_prediction"}),
}


def is_flow_config(scheduler_config) -> bool:
    return str(dict(scheduler_config).get("_class_name", "")).startswith("FlowMatch")


def check_flow_sampler(sampler_name: str, schedule_type: str) -> None:
    """ValueError unless the sampler and schedule type apply to a flow-matching model."""
    spec = find_sampler(sampler_name)
    if spec.name not in FLOW_SAMPLERS:
        raise ValueError(
            f"sampler_name: {spec.name!r} does not apply to flow-matching models (SD 3, FLUX); "
            f"valid for them: {', '.join(FLOW_SAMPLERS)}"
        )
    if schedule_type != "Automatic":
        raise ValueError(
            f"scheduler: {schedule_type!r} is not available for flow-matching models; valid for them: Automatic"
        )


def flow_sampler(spec: SamplerSpec, schedule_type: str, base_config) -> SamplerSpec:
    """The flow-matching form of `spec` for a model whose scheduler config is `base_config`."""
    check_flow_sampler(spec.name, schedule_type)
    class_name, overrides = FLOW_SAMPLERS[spec.name]
    if class_name != "FlowMatchEulerDiscreteScheduler":  # the flow's shift, under the solver's own name
        overrides = overrides | {"flow_shift": dict(base_config).get("shift", 1.0)}
    return SamplerSpec(spec.name, class_name, overrides, schedule_types=AUTOMATIC_ONLY)


def create_scheduler(sampler_name: str, schedule_type: str, base_config) -> diffusers.SchedulerMixin:
    """A fresh scheduler for one generation, built from the model's own scheduler config (its betas, or a flow
    model's shift)."""
    spec = find_sampler(sampler_name)
    if is_flow_config(base_config):
        spec = flow_sampler(spec, schedule_type, base_config)
    check_schedule_type(spec.name, schedule_type, spec)
    overrides = dict(spec.config_overrides)
    flag = SCHEDULE_TYPES[schedule_type]
    if flag is not None:
        overrides[flag] = True
    cls = scheduler_class(spec)
    # Drop options of the model's own scheduler class that this class does not take (diffusers warns about them).
    accepted = inspect.signature(cls.__init__).parameters
    config = {key: value for key, value in dict(base_config).items() if key in accepted or key.startswith("_")}
    return cls.from_config(config, **overrides)


def add_noise(scheduler, clean, noise, timesteps):
    """`clean` latents noised to `timesteps`: the flow's (1 - sigma) x + sigma noise for a flow-matching scheduler
    (at its current step, as diffusers' flow pipelines use it), the DDPM forward process for the others."""
    if hasattr(scheduler, "scale_noise"):
        return scheduler.scale_noise(clean, timesteps, noise)
    return scheduler.add_noise(clean, noise, timesteps)
