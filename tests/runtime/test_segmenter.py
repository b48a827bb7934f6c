"""Segmenter on the bundled models: providers, stages, sizes, and the bundled masks unchanged."""

import numpy as np
import onnxruntime as ort
import pytest
from lvunet_runtime import Segmenter, load_image
from lvunet_runtime.data import read_mask
from lvunet_runtime.errors import LVUNetRuntimeError, ModelError, ProviderError
from lvunet_runtime.model_files import bundled_models
from lvunet_runtime.providers import resolve_providers
from PIL import Image

from tests.helpers import BUNDLED_MASKS, DATA


@pytest.fixture(scope="module")
def polyp():
    return Segmenter("polyp")


def test_default_providers_end_with_cpu():
    providers = resolve_providers(None)
    assert providers[-1] == "CPUExecutionProvider"
    assert resolve_providers(["cpu"]) == ["CPUExecutionProvider"]


def test_unavailable_provider_lists_available():
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has CUDA")
    with pytest.raises(
        ProviderError,
        match=r"'cuda' is not available.*install: .*onnxruntime-gpu.*usable here: .*cpu \(CPUExecutionProvider\)",
    ):
        Segmenter(providers=["cuda"])
    with pytest.raises(ProviderError, match="unknown execution provider 'warp-drive'; known: cpu"):
        resolve_providers(["warp-drive"])
    with pytest.raises(ProviderError) as refused:
        resolve_providers(["cuda"])
    assert "Azure" not in str(refused.value)  # in every wheel, but runs no model here: not offered


def test_active_providers_and_option_checks():
    assert Segmenter("polyp", providers=["cpu"], threads=1).active_providers == [
        "CPUExecutionProvider"
    ]
    with pytest.raises(LVUNetRuntimeError, match="threads must be at least 1"):
        Segmenter("polyp", threads=0)
    with pytest.raises(
        LVUNetRuntimeError, match="threshold must be a number strictly between 0 and 1"
    ):
        Segmenter("polyp", threshold=1.5)


@pytest.mark.parametrize("shape", [(37, 251), (300, 121), (256, 256), (1, 1), (513, 1025)])
def test_masks_come_back_at_input_size(polyp, shape):
    image = np.random.default_rng(0).integers(0, 256, (*shape, 3), dtype=np.uint8)
    prediction = polyp.predict(image)
    assert prediction.mask.shape == shape and prediction.probability.shape == shape
    assert prediction.mask.dtype == bool and 0 <= prediction.probability.min() <= 1


def test_stages_compose_to_predict(polyp):
    images = [load_image(p)[0] for p in sorted((DATA / "images").iterdir())[:3]]
    prepared = [polyp.prepare(image) for image in images]
    assert prepared[0].resized.shape == (256, 256, 3) and prepared[0].image is None
    outputs = polyp.run_prepared(prepared)
    batch = polyp.predict_batch(images)
    for image, p, output, result in zip(images, prepared, outputs, batch, strict=True):
        staged = polyp.finish(output, p.size)
        single = polyp.predict(image)
        assert np.array_equal(staged.mask, single.mask) and np.array_equal(result.mask, single.mask)
        assert np.allclose(staged.probability, single.probability, atol=1e-6)


def test_predict_refuses_non_rgb_and_never_blames_the_model(polyp):
    from lvunet_runtime.errors import ImageError

    with pytest.raises(ImageError, match="a path, file bytes, a PIL image or an RGB uint8 array"):
        polyp.predict(np.zeros((4, 4), np.uint8))
    with pytest.raises(ImageError, match="file not found"):  # a path: the image reader's words
        polyp.predict("missing.jpg")


def test_predict_takes_a_path_bytes_a_pil_image_or_an_array_and_saves_what_lvunet_infer_writes(
    polyp, tmp_path
):
    import json

    from PIL import Image

    from tests.helpers import KVASIR_IMAGE, cli

    by_path = polyp.predict(KVASIR_IMAGE)
    rgb = np.asarray(Image.open(KVASIR_IMAGE).convert("RGB"))
    for other in (KVASIR_IMAGE.read_bytes(), Image.open(KVASIR_IMAGE), rgb, str(KVASIR_IMAGE)):
        result = polyp.predict(other)
        assert np.array_equal(result.mask, by_path.mask) and result.area_px == by_path.area_px
    assert 0 < by_path.area_fraction < 1 and by_path.area_px == int(by_path.mask.sum())
    regions = by_path.regions
    assert regions and all(0.5 < r["mean_probability"] <= 1 for r in regions)
    assert [r["area_px"] for r in regions] == sorted((r["area_px"] for r in regions), reverse=True)
    assert by_path.summary().startswith(f"{KVASIR_IMAGE}: ") and "region" in by_path.summary()
    saved = by_path.save(tmp_path / "api", overlay=True, prob=True, json=True)
    run = cli("infer", KVASIR_IMAGE, "--out", tmp_path / "cli", "--overlay", "--prob", "--json")
    assert run.exit_code == 0, run.stderr
    for kind, path in saved.items():
        assert path.read_bytes() == (tmp_path / "cli" / path.name).read_bytes(), kind
    assert json.loads(by_path.to_json()) == json.loads(saved["json"].read_text())
    assert np.array_equal(by_path.overlay(), np.asarray(Image.open(saved["overlay"])))
    with pytest.raises(Exception, match="exists"):  # never over an existing file
        by_path.save(tmp_path / "api")
    assert repr(polyp).startswith("Segmenter(polyp sha256:") and "CPUExecutionProvider" in repr(
        polyp
    )
    (batch,) = polyp.predict_batch([KVASIR_IMAGE])
    assert np.array_equal(batch.mask, by_path.mask) and batch.name == str(KVASIR_IMAGE)


def test_model_file_errors(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        Segmenter(tmp_path / "missing.onnx")
    (tmp_path / "bad.onnx").write_text("not onnx")
    with pytest.raises(ModelError, match="not a loadable ONNX model"):
        Segmenter(tmp_path / "bad.onnx")


@pytest.mark.parametrize("name", ["polyp", "breast-ultrasound"])
def test_bundled_masks_unchanged(name):
    """Masks of the bundled models on the samples equal those recorded when the file was made
    (benchmarks/bundle_model.py; breast-ultrasound's before the contract moved to version 3; pixels whose probability lies within 1e-4 of the threshold may flip between CPUs)."""
    segmenter = Segmenter(name, providers=["cpu"])
    references = sorted(BUNDLED_MASKS.glob(f"{name}__*.png"))
    assert len(references) == 8
    for reference in references:
        image = DATA / "images" / f"{reference.stem.split('__', 1)[1]}.jpg"
        prediction = segmenter.predict(load_image(image)[0])
        expected = np.asarray(Image.open(reference).convert("L")) > 0
        differ = prediction.mask != expected
        near = np.abs(prediction.probability - segmenter.threshold) < 1e-4
        assert not (differ & ~near).any(), reference.name


def test_bundled_models_carry_the_current_contract():
    recipes = {"polyp": (100, "strong"), "breast-ultrasound": (80, "basic")}  # the model card's
    colours = {
        "polyp": "colour",
        "breast-ultrasound": "grey",
    }  # benchmarks/results/input-colour.json
    assert bundled_models() == sorted(recipes)
    for name in bundled_models():
        contract = Segmenter(name).contract
        assert contract.contract_version == "5" and contract.training_size == (256, 256)
        assert contract.input_colour == colours[name]
        recipe = contract.training_recipe
        assert (recipe["epochs"], recipe["augment"]) == recipes[name] and recipe[
            "pretrained"
        ] is False
        assert len(contract.training_image_sha256) > 600  # the train + validation images
        metrics = contract.test_metrics
        assert metrics["measured_on"].startswith("this file") and 0.5 < metrics["dice"] < 1


def test_bundled_models_segment_their_own_kind_of_image():
    """The shipped models are trained: on the sample images they must beat chance by far."""
    assert {"polyp", "breast-ultrasound"} <= set(bundled_models())
    for name, prefix, floor in (
        ("polyp", "kvasir-seg", 0.6),
        ("breast-ultrasound", "busi__malignant", 0.4),
    ):
        segmenter = Segmenter(name)
        assert segmenter.contract.precision == "fp32" and segmenter.contract.training_dataset
        dices = []
        for path in sorted((DATA / "images").glob(f"{prefix}*")):
            mask, _ = read_mask(DATA / "masks" / f"{path.stem}.png")
            pred = segmenter.predict(load_image(path)[0]).mask
            dices.append(2 * (pred & mask).sum() / max(pred.sum() + mask.sum(), 1))
        assert np.mean(dices) > floor, (name, dices)


def test_gpu_providers_ordered_first_with_options(monkeypatch):
    """The CUDA/TensorRT path without a GPU: order, options, and no silent fallback."""
    import lvunet_runtime.providers as session_module

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
        Segmenter("polyp", providers=["tensorrt", "cuda"])
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


def test_pipeline_keeps_order_and_skips_bad_items(polyp):
    from lvunet_runtime.errors import ImageError
    from lvunet_runtime.pipeline import run_pipeline

    images = {i: np.full((40 + i, 50, 3), 20 * i, np.uint8) for i in range(7)}

    def load(i):
        if i == 3:
            raise ImageError("item 3 is broken")
        return polyp.prepare(images[i])

    def finish(i, prepared, output):
        if i == 5:
            raise OSError("disk full")
        return polyp.finish(output, prepared.size).mask.shape

    outcomes = list(run_pipeline(polyp, range(7), load, finish, workers=2, batch_size=2))
    assert [o.item for o in outcomes] == list(range(7))
    assert [type(o.error).__name__ for o in outcomes if o.error] == ["ImageError", "OSError"]
    assert outcomes[6].result == (46, 50)


@pytest.mark.parametrize("tta", ["h", "hv"])
def test_tta_is_the_mean_of_the_flipped_views_flipped_back(polyp, tta):
    from lvunet_runtime.processing import to_model_input

    rgb, _ = load_image(DATA / "images" / "kvasir-seg__cju2htabevq9108015qjei0x7.jpg")
    augmented = Segmenter("polyp", tta=tta)
    prepared = polyp.prepare(rgb)
    x = to_model_input(prepared.resized[None], polyp.contract)
    views = [((), ())] + [
        (axes, tuple(a - 1 for a in axes))
        for axes in ([(3,)] if tta == "h" else [(3,), (2,), (2, 3)])
    ]
    expected = np.mean(
        [np.flip(polyp.run(np.ascontiguousarray(np.flip(x, a))), b) for a, b in views], axis=0
    )
    got = augmented.run_prepared([prepared])
    assert (
        got.shape == expected.shape == (1, polyp.contract.input_height, polyp.contract.input_width)
    )
    np.testing.assert_allclose(got, expected, atol=1e-5)
    plain = polyp.run_prepared([prepared])
    assert np.abs(got - plain).max() > 1e-3  # the views differ: the average is not the plain output
    batch = augmented.run_prepared([prepared, polyp.prepare(rgb[:, ::-1].copy())])
    np.testing.assert_allclose(batch[0], got[0], atol=1e-5)  # batched like single images
    # a mirror-symmetric average: the mirrored image gives the mirrored output under "h" and "hv"
    np.testing.assert_allclose(batch[1], got[0][:, ::-1], atol=1e-4)


def test_tta_unknown_value_is_refused():
    with pytest.raises(LVUNetRuntimeError, match="tta must be one of off, h, hv"):
        Segmenter("polyp", tta="vh")


def test_finish_resizes_the_probabilities_then_thresholds(polyp):
    """The documented post-processing order (probabilities resized bilinearly to the image, then
    thresholded), checked against OpenCV directly: thresholding first and resizing the mask gives other
    pixels along every edge."""
    import cv2
    from lvunet_runtime.processing import sigmoid

    rng = np.random.default_rng(0)
    output = cv2.GaussianBlur(rng.standard_normal((256, 256)).astype(np.float32), (0, 0), 6) * 40
    prediction = polyp.finish(output, (480, 640), threshold=0.6)
    probability = cv2.resize(sigmoid(output), (640, 480), interpolation=cv2.INTER_LINEAR)
    assert np.abs(prediction.probability - probability).max() < 1e-6
    assert np.array_equal(prediction.mask, probability > 0.6)
    assert 0.05 < prediction.mask.mean() < 0.95
    other_order = cv2.resize(
        (sigmoid(output) > 0.6).astype(np.uint8), (640, 480), interpolation=cv2.INTER_NEAREST
    )
    assert (other_order.astype(bool) != prediction.mask).sum() > 100
