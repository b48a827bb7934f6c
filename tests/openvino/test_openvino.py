"""The OpenVINO provider on this machine's CPU (`make test-openvino`: onnxruntime-openvino replaces
onnxruntime in its own environment): masks agree with the CPU provider, nothing falls back silently."""

import numpy as np
import onnxruntime as ort
import pytest
from lvunet_runtime import Segmenter, load_image
from lvunet_runtime.errors import ProviderError
from lvunet_runtime.metrics import confusion_counts, per_image_scores

from tests.helpers import DATA, cli

pytestmark = pytest.mark.openvino

IMAGES = sorted((DATA / "images").glob("*.jpg"))


def test_openvino_is_installed_and_first_in_the_default_order():
    assert "OpenVINOExecutionProvider" in ort.get_available_providers()
    assert Segmenter("polyp").active_providers[0] == "OpenVINOExecutionProvider"


@pytest.mark.parametrize("model", ["polyp", "breast-ultrasound"])
def test_fp32_masks_equal_the_cpu_provider(model):
    cpu, ov = Segmenter(model, providers=["cpu"]), Segmenter(model, providers=["openvino"])
    assert ov.node_placement() == {"OpenVINOExecutionProvider": 1}  # nothing left to the CPU
    for path in IMAGES:
        rgb = load_image(path)[0]
        a, b = cpu.predict(rgb), ov.predict(rgb)
        near = np.abs(a.probability - cpu.threshold) < 1e-4
        assert not ((a.mask != b.mask) & ~near).any(), path.name


@pytest.mark.parametrize(("model", "kind"), [("polyp", "kvasir"), ("breast-ultrasound", "busi")])
def test_bf16_masks_agree(model, kind):
    """Dice >= 0.99 on every image of the model's own kind; a near-empty mask (busi__malignant_105: 4
    pixels on the CPU) may instead differ by a few pixels, where one pixel moves Dice by 14%."""
    cpu = Segmenter(model, providers=["cpu"])
    ov = Segmenter(model, providers=["openvino"], precision="bf16")
    paths = [p for p in IMAGES if p.name.startswith(kind)]
    assert len(paths) == 8  # the sample's images of this kind
    for path in paths:
        rgb = load_image(path)[0]
        a, b = cpu.predict(rgb).mask, ov.predict(rgb).mask
        dice = per_image_scores(confusion_counts(a[None], b[None]))[1][0]
        assert dice >= 0.99 or np.count_nonzero(a != b) <= 8, (path.name, dice)


def test_no_silent_fallback():
    with pytest.raises(ProviderError, match="could not start OpenVINOExecutionProvider"):
        Segmenter("polyp", providers=["openvino"], precision="fp16")  # a CPU takes fp32 or bf16
    result = cli(
        "infer", IMAGES[0], "--provider", "openvino", "--precision", "fp16", "--out", "/tmp/never"
    )
    assert result.exit_code == 1 and len(result.stderr.strip().splitlines()) == 1


def test_bench_reports_agreement_per_provider(tmp_path):
    import json

    report = tmp_path / "b.json"
    args = ["--providers", "cpu,openvino,openvino:bf16", "--threads", "1", "--batch-sizes", "1"]
    result = cli("bench", *args, "--runs", "3", "--warmup", "1", "--json", report)
    assert result.exit_code == 0, result.stderr
    rows = {r["provider"]: r for r in json.loads(report.read_text())["results"]}
    assert rows["openvino"]["active_providers"][0] == "OpenVINOExecutionProvider"
    assert (
        rows["openvino"]["dice_vs_cpu_fp32"] > 0.999
        and 0.98 <= rows["openvino:bf16"]["dice_vs_cpu_fp32"] <= 1
    )
