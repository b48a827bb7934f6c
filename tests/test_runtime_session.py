"""Segmenter: model resolution, providers, contract, sizes, bundled models."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from lvunet_runtime import Segmenter, load_image
from lvunet_runtime.errors import ModelError, ProviderError
from lvunet_runtime.session import bundled_models, resolve_providers

from tests.conftest import DATA


def test_default_providers_end_with_cpu():
    providers = resolve_providers(None)
    assert providers[-1] == "CPUExecutionProvider"
    assert resolve_providers(["cpu"]) == ["CPUExecutionProvider"]


def test_unavailable_provider_lists_available():
    missing = "CUDAExecutionProvider" not in ort.get_available_providers()
    if not missing:
        pytest.skip("this onnxruntime has CUDA")
    with pytest.raises(
        ProviderError, match=r"'cuda' is not available.*available: .*cpu \(CPUExecutionProvider\)"
    ):
        Segmenter(providers=["cuda"])
    with pytest.raises(ProviderError, match="'warp-drive'"):
        resolve_providers(["warp-drive"])


def test_active_providers_and_threads(exported):
    segmenter = Segmenter(exported[0], providers=["cpu"], threads=1)
    assert segmenter.active_providers == ["CPUExecutionProvider"]


@pytest.mark.parametrize("shape", [(37, 251), (300, 121), (256, 256), (1, 1), (513, 1025)])
def test_masks_come_back_at_input_size(exported, shape):
    segmenter = Segmenter(exported[0])
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    prediction = segmenter.predict(image)
    assert prediction.mask.shape == shape and prediction.probability.shape == shape
    assert prediction.mask.dtype == bool and 0 <= prediction.probability.min() <= 1


def test_predict_batch_equals_predict(exported):
    segmenter = Segmenter(exported[0])
    images = [load_image(p)[0] for p in sorted((DATA / "images").iterdir())[:3]]
    batch = segmenter.predict_batch(images)
    for image, result in zip(images, batch, strict=True):
        assert np.array_equal(segmenter.predict(image).mask, result.mask)


def test_model_errors(tmp_path, exported):
    with pytest.raises(ModelError, match="not found"):
        Segmenter(tmp_path / "missing.onnx")
    (tmp_path / "bad.onnx").write_text("not onnx")
    with pytest.raises(ModelError, match="not a loadable ONNX model"):
        Segmenter(tmp_path / "bad.onnx")
    model = onnx.load(str(exported[0]))
    del model.metadata_props[:]
    onnx.save(model, str(tmp_path / "bare.onnx"))
    with pytest.raises(ModelError, match="lacks the LV-UNet metadata contract"):
        Segmenter(tmp_path / "bare.onnx")
    with pytest.raises(ModelError, match="RGB uint8"):
        Segmenter(exported[0]).predict(np.zeros((4, 4), np.uint8))


def test_bundled_models_segment_their_own_kind_of_image():
    """The shipped models are trained: on the sample images they must beat chance by far."""
    assert {"polyp", "breast-ultrasound"} <= set(bundled_models())
    from lvunet_runtime.evaluate import _read_mask

    for name, prefix, floor in (
        ("polyp", "kvasir-seg", 0.6),
        ("breast-ultrasound", "busi__malignant", 0.4),
    ):
        segmenter = Segmenter(name)
        assert segmenter.contract.precision == "fp32" and segmenter.contract.training_dataset
        dices = []
        for path in sorted((DATA / "images").glob(f"{prefix}*")):
            mask = _read_mask(DATA / "masks" / f"{path.stem}.png")
            pred = segmenter.predict(load_image(path)[0]).mask
            dices.append(2 * (pred & mask).sum() / max(pred.sum() + mask.sum(), 1))
        assert np.mean(dices) > floor, (name, dices)


def test_gpu_providers_ordered_first_with_options(monkeypatch, exported):
    """The CUDA/TensorRT path without a GPU: order, options, and no silent fallback."""
    import lvunet_runtime.session as session_module

    fake = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    monkeypatch.setattr(ort, "get_available_providers", lambda: fake)
    assert resolve_providers(None) == fake
    assert resolve_providers(["cuda", "cpu"]) == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    captured = {}
    real = ort.InferenceSession

    def fake_session(path, options, providers, provider_options):
        captured.update(providers=providers, provider_options=provider_options)
        return real(path, options, providers=["CPUExecutionProvider"])

    monkeypatch.setattr(session_module.ort, "InferenceSession", fake_session)
    with pytest.raises(ProviderError, match="fell back to CPU"):
        Segmenter(exported[0], providers=["tensorrt", "cuda"])
    assert captured["providers"] == ["TensorrtExecutionProvider", "CUDAExecutionProvider"]
    assert captured["provider_options"][0]["trt_engine_cache_enable"] == "True"
    assert captured["provider_options"][1] == {"cudnn_conv_algo_search": "HEURISTIC"}


def test_keep_largest_region():
    from lvunet_runtime.processing import keep_largest_region

    mask = np.zeros((20, 20), bool)
    mask[1:3, 1:3] = True
    mask[10:18, 10:18] = True
    kept = keep_largest_region(mask)
    assert kept.sum() == 64 and not kept[1, 1]
    assert not keep_largest_region(np.zeros((4, 4), bool)).any()
