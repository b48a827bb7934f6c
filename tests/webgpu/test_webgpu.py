"""The WebGPU execution provider on a software adapter (SwiftShader's Vulkan driver, which Debian's
chromium package ships): the bundled models' masks and logits equal the CPU EP's, every node runs on
WebGPU, batches and test-time augmentation work, and the commands choose the adapter explicitly.

Runs where the plugin is installed (`make test-webgpu`: the runtime's `[webgpu]` extra, with
VK_ICD_FILENAMES pointing at SwiftShader), selected by the ``webgpu`` marker. SwiftShader renders on the
CPU: about 2.8 s per 256x256 image on 2 cores, so each model runs the 16 sample images once (in batches
of 4, which covers batch > 1), test-time augmentation is checked on one image of the polyp model, and node
placement once through the command line (both bundled models have the same graph)."""

import json

import numpy as np
import pytest
from lvunet_runtime import Segmenter, load_image
from lvunet_runtime.model_files import bundled_models

from tests.helpers import DATA, cli

pytestmark = pytest.mark.webgpu

IMAGES = sorted((DATA / "images").glob("*.jpg"))
WEBGPU = "WebGpuExecutionProvider"
LOGIT_TOLERANCE = 2e-4  # measured: at most 4e-5 on the samples (SwiftShader vs the CPU EP)
THRESHOLD_MARGIN = (
    1e-4  # masks may differ only where the probability is this close to the threshold
)


@pytest.fixture(scope="module", params=bundled_models())
def pair(request):
    """(WebGPU segmenter on the software adapter, CPU segmenter) for one bundled model."""
    gpu = Segmenter(request.param, providers=["webgpu"], device="software")
    return gpu, Segmenter(request.param, providers=["cpu"])


def test_sixteen_images_in_batches_equal_the_cpu_ep(pair):
    gpu, cpu = pair
    assert gpu.active_providers[0] == WEBGPU and gpu.adapter.kind == "software"
    assert len(IMAGES) == 16
    images = [load_image(p)[0] for p in IMAGES]
    for start in range(0, 16, 4):  # batch 4: one model call per 4 images
        prepared = [gpu.prepare(rgb) for rgb in images[start : start + 4]]
        outputs, reference = gpu.run_prepared(prepared), cpu.run_prepared(prepared)
        assert outputs.shape == (4, *gpu.contract.input_size)
        assert np.abs(outputs - reference).max() < LOGIT_TOLERANCE
        for p, output, ref in zip(prepared, outputs, reference, strict=True):
            got, want = gpu.finish(output, p.size), cpu.finish(ref, p.size)
            decided = np.abs(want.probability - cpu.threshold) > THRESHOLD_MARGIN
            assert not (got.mask != want.mask)[decided].any()


def test_test_time_augmentation_on_webgpu():
    """One image, polyp only: the four flipped views cost four model runs on the software adapter."""
    rgb = load_image(next(p for p in IMAGES if p.name.startswith("kvasir-seg")))[0]
    got = Segmenter("polyp", providers=["webgpu"], device="software", tta="hv").predict(rgb)
    want = Segmenter("polyp", providers=["cpu"], tta="hv").predict(rgb)
    assert np.abs(got.probability - want.probability).max() < 1e-4
    decided = np.abs(want.probability - 0.5) > THRESHOLD_MARGIN
    assert want.mask.mean() > 0.01 and not (got.mask != want.mask)[decided].any()


def test_cli_needs_the_software_adapter_asked_for_and_says_which_ran(tmp_path):
    refused = cli("infer", IMAGES[0], "--provider", "webgpu", "--out", tmp_path / "a")
    lines = refused.stderr.strip().splitlines()
    assert refused.exit_code == 1 and len(lines) == 1 and "no hardware GPU adapter" in lines[0]
    assert "--device software" in lines[0] and not (tmp_path / "a").exists()
    busi = next(p for p in IMAGES if p.name.startswith("busi"))
    out = tmp_path / "b"
    ran = cli(
        "infer", busi, "--model", "breast-ultrasound", "--provider", "webgpu",
        "--device", "software", "--out", out,
    )  # fmt: skip
    assert ran.exit_code == 0, ran.stderr
    assert "WebGpu" in ran.stdout and "SwiftShader" in ran.stdout and "software" in ran.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["providers"][0] == WEBGPU and summary["adapter"]["kind"] == "software"
    # the whole graph on WebGPU (the polyp model has the same graph): none of it left to the CPU EP
    placement = summary["node_placement"]
    assert set(placement) == {WEBGPU} and placement[WEBGPU] > 50, placement
