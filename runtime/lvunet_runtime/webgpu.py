"""The WebGPU execution provider: one provider for every laptop GPU (Vulkan on Linux, Direct3D 12 on
Windows, Metal on macOS, through Dawn), from the optional extra ``lvunet-runtime[webgpu]`` (the
``onnxruntime-ep-webgpu`` plugin, Python 3.11+, onnxruntime 1.24.4+).

The plugin is registered once per process (:func:`register`). Adapters are chosen explicitly: a hardware
adapter by default; the software adapter (a CPU renderer such as SwiftShader: slow, for correctness
checks) only when asked with ``--device software``, never as a silent fallback. ONNX Runtime does not
name the adapter Dawn picks, so on Linux the Vulkan devices are read here (:func:`vulkan_devices`) and the
one Dawn prefers (discrete, then integrated, then virtual, then CPU) is reported.
"""

from __future__ import annotations

import ctypes
import functools
import os
import sys
from dataclasses import asdict, dataclass

from lvunet_runtime.console import quiet_stderr
from lvunet_runtime.errors import ProviderError, first_line

EP_NAME = "WebGpuExecutionProvider"
MIN_ONNXRUNTIME = (1, 24, 4)
INSTALL = "pip install 'lvunet-runtime[webgpu]' (Python 3.11+; on Linux also the Vulkan loader: apt install libvulkan1)"
DEVICES = ("gpu", "software")  # --device for --provider webgpu
SOFTWARE_ENV = "ORT_WEBGPU_EP_ALLOW_SOFTWARE_ADAPTER"  # read by the plugin when it is registered
# On a software renderer the NCHW layout ran the bundled model 1.7x faster than the EP's default NHWC
# (2.8 vs 4.6 s per 256x256 image on SwiftShader, 2 cores); hardware adapters keep the EP's default.
SOFTWARE_OPTIONS = {"preferredLayout": "NCHW"}
VULKAN_TYPES = {0: "other", 1: "integrated GPU", 2: "discrete GPU", 3: "virtual GPU", 4: "CPU"}
DAWN_PREFERENCE = (2, 1, 3, 0, 4)  # Dawn's high-performance order of Vulkan device types


@dataclass(frozen=True)
class Adapter:
    """What a WebGPU session runs on, as far as this machine can tell."""

    kind: str  # "hardware" or "software"
    vendor: str
    name: str
    backend: str  # Vulkan, Direct3D 12, Metal

    def line(self) -> str:
        return f"{self.name} ({self.kind}, {self.vendor}, {self.backend})"

    def to_dict(self) -> dict:
        return asdict(self)


def backend() -> str:
    """Dawn's backend on this platform."""
    if sys.platform == "win32":
        return "Direct3D 12"
    if sys.platform == "darwin":
        return "Metal"
    return "Vulkan"


def _plugin():
    try:
        import onnxruntime_ep_webgpu
    except ImportError:
        raise ProviderError(f"--provider webgpu needs its extra: {INSTALL}") from None
    return onnxruntime_ep_webgpu


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split("+")[0].split(".")[:3] if p.isdigit())


def check_vulkan_loader() -> None:
    """On Linux the plugin needs the system Vulkan loader (``libvulkan.so.1``)."""
    if backend() != "Vulkan":
        return
    try:
        ctypes.CDLL("libvulkan.so.1")
    except OSError:
        raise ProviderError(
            "--provider webgpu needs the Vulkan loader libvulkan.so.1, which is not installed: "
            "apt install libvulkan1 (Debian/Ubuntu) or dnf install vulkan-loader (Fedora)"
        ) from None


@functools.cache
def register() -> None:
    """Register the plugin with ONNX Runtime, once per process. The software adapter is made listable
    (the plugin reads ``ORT_WEBGPU_EP_ALLOW_SOFTWARE_ADAPTER`` here, and only here); :func:`choose`
    decides whether it may be used.

    Raises:
        ProviderError: the extra is missing, onnxruntime is too old, or the Vulkan loader is missing.
    """
    import onnxruntime as ort

    plugin = _plugin()
    if _version(ort.__version__) < MIN_ONNXRUNTIME:
        raise ProviderError(
            f"--provider webgpu needs onnxruntime 1.24.4 or newer, this is {ort.__version__}: "
            "pip install --upgrade 'onnxruntime>=1.24.4'"
        )
    check_vulkan_loader()
    before = os.environ.get(SOFTWARE_ENV)
    os.environ[SOFTWARE_ENV] = "1"
    try:
        with quiet_stderr():  # its note that software adapters are listable: our choice says more
            ort.register_execution_provider_library("webgpu", plugin.get_library_path())
    except Exception as exc:  # onnxruntime's own error types
        raise ProviderError(
            f"the WebGPU plugin could not be registered: {first_line(exc)}"
        ) from None
    finally:
        if before is None:
            os.environ.pop(SOFTWARE_ENV, None)
        else:
            os.environ[SOFTWARE_ENV] = before


def ep_devices() -> list:
    """The WebGPU EP's devices ONNX Runtime lists (after :func:`register`)."""
    import onnxruntime as ort

    register()
    return [d for d in ort.get_ep_devices() if d.ep_name == EP_NAME]


def _is_software(ep_device) -> bool:
    """The plugin lists the software adapter as a CPU hardware device (``OrtHardwareDeviceType.CPU``)."""
    kind = ep_device.device.type
    return getattr(kind, "name", str(kind)).upper().endswith("CPU")


def vulkan_devices() -> list[dict]:
    """The Vulkan physical devices the loader sees (name, vendor id, type), read through
    ``libvulkan.so.1`` itself; empty where there is no Vulkan or it cannot be asked."""
    try:
        vulkan = ctypes.CDLL("libvulkan.so.1")
    except OSError:
        return []

    class CreateInfo(ctypes.Structure):
        _fields_ = [
            ("sType", ctypes.c_int),
            ("pNext", ctypes.c_void_p),
            ("flags", ctypes.c_uint32),
            ("pApplicationInfo", ctypes.c_void_p),
            ("enabledLayerCount", ctypes.c_uint32),
            ("ppEnabledLayerNames", ctypes.c_void_p),
            ("enabledExtensionCount", ctypes.c_uint32),
            ("ppEnabledExtensionNames", ctypes.c_void_p),
        ]

    instance = ctypes.c_void_p()
    if vulkan.vkCreateInstance(ctypes.byref(CreateInfo(sType=1)), None, ctypes.byref(instance)):
        return []
    try:
        count = ctypes.c_uint32()
        vulkan.vkEnumeratePhysicalDevices(instance, ctypes.byref(count), None)
        handles = (ctypes.c_void_p * count.value)()
        vulkan.vkEnumeratePhysicalDevices(instance, ctypes.byref(count), handles)
        devices = []
        for handle in handles[: count.value]:
            properties = ctypes.create_string_buffer(2048)  # VkPhysicalDeviceProperties, generously
            vulkan.vkGetPhysicalDeviceProperties(ctypes.c_void_p(handle), properties)
            fields = (ctypes.c_uint32 * 5).from_buffer_copy(properties.raw[:20])
            name = properties.raw[20:276].split(b"\0", 1)[0].decode("utf-8", "replace")
            devices.append({"name": name, "vendor_id": fields[2], "type": fields[4]})
        return devices
    finally:
        vulkan.vkDestroyInstance(instance, None)


VENDORS = {0x10DE: "NVIDIA", 0x1002: "AMD", 0x8086: "Intel", 0x106B: "Apple", 0x1AE0: "Google"}


def describe(ep_device) -> Adapter:
    """The adapter a session on ``ep_device`` runs on."""
    kind = "software" if _is_software(ep_device) else "hardware"
    found = vulkan_devices() if backend() == "Vulkan" else []
    wanted = (4,) if kind == "software" else DAWN_PREFERENCE[:4]
    ranked = sorted(
        (d for d in found if d["type"] in wanted), key=lambda d: DAWN_PREFERENCE.index(d["type"])
    )
    if ranked:
        best = ranked[0]
        vendor = VENDORS.get(best["vendor_id"], f"vendor 0x{best['vendor_id']:04x}")
        return Adapter(kind, vendor, best["name"], backend())
    device = ep_device.device
    return Adapter(kind, device.vendor or "unknown", "adapter chosen by Dawn", backend())


def choose(device: str | None) -> tuple[object, Adapter, dict[str, str]]:
    """(EP device, adapter, provider options) for ``--device`` ``gpu`` (the default) or ``software``.

    Raises:
        ProviderError: no adapter of the kind asked for, with what there is and what to do.
    """
    wanted = (device or "gpu").lower()
    if wanted not in DEVICES:
        raise ProviderError(
            f"--device for --provider webgpu must be one of {', '.join(DEVICES)}, not {device!r}"
        )
    found = ep_devices()
    software = [d for d in found if _is_software(d)]
    hardware = [d for d in found if not _is_software(d)]
    if wanted == "gpu" and hardware:
        return hardware[0], describe(hardware[0]), {}
    if wanted == "software" and software:
        return software[0], describe(software[0]), dict(SOFTWARE_OPTIONS)
    if wanted == "gpu":
        more = (
            "; only a software adapter is available: --device software runs on it (slow: for "
            "correctness checks)"
            if software
            else ""
        )
        raise ProviderError(
            f"WebGPU found no hardware GPU adapter on this machine (check the GPU driver){more}"
        )
    raise ProviderError(
        "WebGPU found no software adapter: on Linux point VK_ICD_FILENAMES at a software Vulkan driver "
        "such as SwiftShader's vk_swiftshader_icd.json (Debian's chromium package ships one)"
    )


def adapters() -> list[str]:
    """One line per WebGPU adapter this machine offers (for ``--version``); empty without the extra."""
    try:
        return [describe(d).line() for d in ep_devices()]
    except ProviderError:
        return []


def reason(exc: BaseException) -> str:
    """The informative part of a failed WebGPU session's message: ONNX Runtime wraps Dawn's words
    (``Failed to get a WebGPU adapter: No supported adapters``) in C++ source locations."""
    text = " ".join(str(exc).split())
    for marker in ("Failed to ", " was false. "):
        if marker in text:
            return text[text.rindex(marker) :].removeprefix(" was false. ").strip()[:200]
    return first_line(exc, 200)
