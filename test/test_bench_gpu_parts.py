"""The GPU benchmark's parts that decide things: kernel categories, variants, the targets table."""

import pytest
import torch

from bench import gpu_profile, gpu_report, gpu_variants
from modules.fast_path import FastPath

# Kernel names from the H200 profile of the eager pipeline (bench/results/gpu_h200_profile_raw.log) and inductor.
KERNELS = {
    "void at::native::elementwise_kernel<128, 4, at::native::gpu_kernel_impl>": "eager elementwise/norm",
    "void at::native::(anonymous namespace)::RowwiseMomentsCUDAKernel<c10::Half>": "eager elementwise/norm",
    "cudnn_generated_fort_native_sdpa_sm90_flash_fprop_wgmma_f16_knob_7_64x64x128": "attention",
    "void pytorch_flash::flash_fwd_kernel<Flash_fwd_kernel_traits<64>>": "attention",
    "fmha_cutlassF_f16_aligned_64x128_rf_sm80(PyTorchMemEffAttention::AttentionKernel)": "attention",
    "sm90_xmma_fprop_implicit_gemm_f16f16_f16f32_f32_nhwckrsc_nhwc_tilesize128x128x64": "convolution",
    "void cudnn::engines_precompiled::nchwToNhwcKernel<__half, __half, float>": "layout transposes",
    "void cudnn::engines_precompiled::nhwcToNchwKernel<__half, __half, float>": "layout transposes",
    "nvjet_sm90_hsh_256x128_64x4_1x2_h_bz_coopA_bias_TNT": "matmul",
    "triton_poi_fused_convolution_0": "compiled Triton (fused)",
    "triton_red_fused_native_group_norm_silu_3": "compiled Triton (fused)",
    "Memcpy DtoD (Device -> Device)": "memcpy/memset",
    "aten::mkldnn_convolution": "convolution",
    "aten::addmm": "matmul",
}


@pytest.mark.parametrize("name, category", KERNELS.items())
def test_kernel_category(name, category):
    assert gpu_profile.kernel_category(name) == category


def test_summary_shares_add_up_and_find_fused_group_norm_silu():
    summary = gpu_profile.summarize(
        {"triton_red_fused_native_group_norm_silu_3": 30.0, "triton_poi_fused_add_1": 10.0, "nvjet_sm90": 60.0},
        wall_ms=0.2,
    )
    assert summary["categories"] == pytest.approx({"matmul": 0.6, "compiled Triton (fused)": 0.4})
    assert summary["group_norm_silu_fused_share"] == pytest.approx(0.3)
    assert summary["top"][0][0] == "nvjet_sm90" and summary["total_ms"] == pytest.approx(0.1)


def test_variant_combines_knobs_and_restores_flags():
    variant = gpu_variants.parse_variant("channels-last+cudnn-benchmark+bf16")
    assert variant.fast_path(FastPath()) == FastPath(channels_last=True)
    assert variant.dtype(torch.float16) == torch.bfloat16
    assert variant.seconds == 60
    before = torch.backends.cudnn.benchmark
    with variant.settings():
        assert torch.backends.cudnn.benchmark
    assert torch.backends.cudnn.benchmark == before


def test_variant_says_why_it_cannot_run():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert gpu_variants.parse_variant("sdpa-cudnn").skip_reason(cpu, compiling=False) == "needs CUDA"
    assert "torch.compile" in gpu_variants.parse_variant("max-autotune").skip_reason(cpu, compiling=False)
    assert gpu_variants.parse_variant("max-autotune+sdpa-cudnn").skip_reason(cuda, compiling=True) is None
    assert gpu_variants.parse_variant("channels-last").skip_reason(cpu, compiling=False) is None


def test_unknown_knob_is_refused_with_the_known_ones():
    with pytest.raises(ValueError, match="unknown knob 'channel-last'.*channels-last"):
        gpu_variants.parse_variant("channel-last")


def test_every_default_variant_is_a_known_knob():
    assert set(gpu_variants.DEFAULT_VARIANTS) == set(gpu_variants.KNOBS)


def entry(image_steps_s, pixels_ok=True, **more):
    return {"image_steps_s": image_steps_s, "it_s": image_steps_s / 16, "pixels_ok": pixels_ok, **more}


def h200_like_report(variants):
    return {
        "variant_batch": 16,
        "rows": [
            {"batch": 1, "raw": {"it_s": 33.0}, "fast": {"it_s": 137.0}},
            {"batch": 16, "raw": entry(166.0), "fast": entry(236.0)},
        ],
        "variants": variants,
        "warm_start": {"first_image_s": 16.2},
    }


def test_targets_take_the_fastest_path_that_passes_the_image_check():
    report = h200_like_report(
        [
            dict(entry(330.0), name="channels-last", status="measured"),
            dict(entry(400.0, pixels_ok=False), name="bf16", status="measured"),
            {"name": "max-autotune", "status": "skipped", "reason": "time budget"},
        ]
    )
    text = gpu_report.targets_table(report)
    assert "| 330 (channels-last) | yes |" in text
    assert "| 4.15x | yes |" in text
    assert "| 16.2 s | **no** |" in text


def test_targets_say_no_when_nothing_reaches_half_the_peak():
    text = gpu_report.targets_table(h200_like_report([]))
    assert "| 236 (fast path) | **no** |" in text


def test_report_of_a_run_stopped_before_the_fast_path():
    report = {
        "device": "NVIDIA H200",
        "torch": "2.11.0",
        "diffusers": "0.42.1",
        "dtype": "float16",
        "size": 512,
        "steps": 20,
        "repeats": 3,
        "variant_batch": 16,
        "fast_path": "fused-qkv+compile (reduce-overhead)",
        "sections_s": {"build model": 12.0},
        "rows": [{"batch": 1}, {"batch": 16}],
        "variants": [],
    }
    text = gpu_report.markdown(report)
    assert "| 16 | – |" in text and "Targets: nothing measured yet." in text


def sdxl_report(**sdxl):
    return {"steps": 20, "fast_path": "fused-qkv+compile (reduce-overhead)", "sdxl": {"size": 1024, **sdxl}}


def test_sdxl_table_gives_both_speed_ups_against_raw_and_the_image_check():
    fast = {"it_s": 25.0, "max_diff": 1, "mean_diff": 0.05, "pixels_ok": True}
    report = sdxl_report(
        rows=[
            {"batch": 1, "raw": {"it_s": 10.0}, "default": {"it_s": 11.0}, "fast": fast},
            {"batch": 4, "raw": {"it_s": 3.0}, "default": {"it_s": 3.0}, "fast": {"skipped": "time budget"}},
        ]
    )
    text = gpu_report.sdxl_table(report)
    assert "1024x1024, 20 steps" in text
    assert "| 1 | 10.00 | 11.00 | 25.00 | **2.50** | 1.10 | yes (max 1, mean 0.050) |" in text
    assert "| 4 | 3.00 | 3.00 | – | – | 1.00 | – |" in text
    assert "SDXL fast path at batch 4 skipped: time budget." in text


def test_sdxl_part_skipped_by_the_budget_says_why():
    text = gpu_report.sdxl_table(sdxl_report(rows=[{"batch": 1}], skipped="time budget: needs ~150 s, 90 s left"))
    assert text.endswith("Skipped: time budget: needs ~150 s, 90 s left.")
