"""The WebGPU provider's choices without the plugin or a GPU: explicit adapters, one-line refusals, and
Dawn's reason pulled out of ONNX Runtime's message. The real runs are in tests/webgpu (marker webgpu)."""

import sys
from types import SimpleNamespace

import onnxruntime as ort
import pytest
from lvunet_runtime import Segmenter, webgpu
from lvunet_runtime.errors import ProviderError

from tests.helpers import BUSI_IMAGE, cli


def _device(kind):
    return SimpleNamespace(
        ep_name=webgpu.EP_NAME,
        device=SimpleNamespace(
            type=kind, vendor="Some vendor", vendor_id=1, device_id=2, metadata={}
        ),
    )


# onnxruntime's OrtHardwareDeviceType (1.22+; the lowest versions the runtime supports lack it)
CPU, GPU = SimpleNamespace(name="CPU"), SimpleNamespace(name="GPU")


def test_hardware_first_software_only_when_asked(monkeypatch):
    monkeypatch.setattr(webgpu, "vulkan_devices", lambda: [])
    monkeypatch.setattr(webgpu, "ep_devices", lambda: [_device(CPU), _device(GPU)])
    device, adapter, options = webgpu.choose(None)
    assert device.device.type == GPU and adapter.kind == "hardware" and options == {}
    device, adapter, options = webgpu.choose("software")
    assert device.device.type == CPU and adapter.kind == "software"
    assert options == {"preferredLayout": "NCHW"}
    monkeypatch.setattr(webgpu, "ep_devices", lambda: [_device(CPU)])
    with pytest.raises(ProviderError, match="no hardware GPU adapter.*--device software"):
        webgpu.choose("gpu")  # never a silent software run
    monkeypatch.setattr(webgpu, "ep_devices", lambda: [_device(GPU)])
    with pytest.raises(ProviderError, match="no software adapter.*VK_ICD_FILENAMES"):
        webgpu.choose("software")
    with pytest.raises(ProviderError, match="must be one of gpu, software"):
        webgpu.choose("NPU")


def test_the_adapter_reported_is_the_one_dawn_prefers(monkeypatch):
    monkeypatch.setattr(webgpu, "backend", lambda: "Vulkan")
    monkeypatch.setattr(
        webgpu,
        "vulkan_devices",
        lambda: [
            {"name": "llvmpipe", "vendor_id": 0x10005, "type": 4},
            {"name": "Intel(R) Iris(R) Xe Graphics", "vendor_id": 0x8086, "type": 1},
            {"name": "NVIDIA RTX 4060 Laptop GPU", "vendor_id": 0x10DE, "type": 2},
        ],
    )
    hardware, software = webgpu.describe(_device(GPU)), webgpu.describe(_device(CPU))
    assert hardware.line() == "NVIDIA RTX 4060 Laptop GPU (hardware, NVIDIA, Vulkan)"
    assert software.name == "llvmpipe" and software.kind == "software"


def test_dawns_reason_is_pulled_out_of_the_cpp_locations():
    message = (
        "[ONNXRuntimeError] : 11 : EP_FAIL : /src/ep_plugin_provider_interfaces.cc:393 virtual x "
        "[ONNXRuntimeError] : 11 : EP_FAIL : /src/webgpu_context.cc:136 lambda adapter_result.status "
        "== wgpu::RequestAdapterStatus::Success was false. Failed to get a WebGPU adapter: No "
        "supported adapters\n\n"
    )
    assert webgpu.reason(RuntimeError(message)) == (
        "Failed to get a WebGPU adapter: No supported adapters"
    )
    assert webgpu.reason(RuntimeError("plain words")) == "plain words"


def test_without_the_extra_one_line_names_the_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime_ep_webgpu", None)  # as if not installed
    webgpu.register.cache_clear()
    try:
        result = cli("infer", BUSI_IMAGE, "--provider", "webgpu", "--out", tmp_path / "o")
    finally:
        webgpu.register.cache_clear()
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 1 and len(lines) == 1, result.stderr
    assert "pip install 'lvunet-runtime[webgpu]'" in lines[0] and not (tmp_path / "o").exists()


def test_precision_and_device_are_checked_for_webgpu_before_any_session(monkeypatch):
    monkeypatch.setattr(
        ort, "get_available_providers", lambda: ["WebGpuExecutionProvider", "CPUExecutionProvider"]
    )
    monkeypatch.setattr(webgpu, "register", lambda: None)
    with pytest.raises(ProviderError, match="fp16 is not offered on WebGPU"):
        Segmenter("polyp", providers=["webgpu"], precision="fp16")
    with pytest.raises(
        ProviderError, match="--device for --provider webgpu must be one of gpu, software"
    ):
        Segmenter("polyp", providers=["webgpu"], device="NPU")
    with pytest.raises(ProviderError, match="add --provider openvino or --provider webgpu"):
        Segmenter("polyp", providers=["cpu"], device="software")
