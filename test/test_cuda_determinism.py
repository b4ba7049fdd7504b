"""What holds on CUDA (runs only where a GPU is present): the same job twice on the same GPU, with cuDNN's
deterministic algorithms and cuBLAS's fixed workspace, gives the same bytes, and the infotext names the GPU."""

import os
import subprocess
import sys

import pytest
import torch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

CODE = """
import hashlib, torch
import serena_kit as sk
torch.backends.cudnn.deterministic = True
torch.backends.cudnn.benchmark = False
hashes = []
for _ in range(2):
    result = sk.txt2img("a red circle on a blue background", seed=5, steps=8, batch_size=2, do_not_save_samples=True)
    hashes.append(sk.png_hash(result.images))
print(hashes[0] == hashes[1], result.infotexts[0].rsplit("Kernels: ", 1)[-1])
"""


def test_the_same_job_twice_on_one_gpu_gives_the_same_bytes():
    environment = os.environ | {"CUBLAS_WORKSPACE_CONFIG": ":4096:8", "SERENA_DEVICE": "cuda"}
    completed = subprocess.run([sys.executable, "-c", CODE], env=environment, capture_output=True, text=True)
    assert completed.returncode == 0, completed.stderr[-2000:]
    same, kernels = completed.stdout.strip().split(" ", 1)
    assert same == "True"
    assert kernels == f"cuda {torch.cuda.get_device_name()}"
