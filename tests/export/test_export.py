"""Export: graph structure, size, torch == ONNX Runtime, metadata contract, variants, error paths."""

import subprocess
import sys

import numpy as np
import onnx
import pytest
import torch
from lvunet_export.export import ExportError, export_onnx
from lvunet_runtime.contract import ModelContract

from lvunet_edge import build_model, reparameterize_model, save_checkpoint, set_act_slope
from tests.helpers import DATA, randomize_bn


def test_fused_graph_structure_and_size(exported):
    path, report = exported
    model = onnx.load(str(path))
    ops = {n.op_type for n in model.graph.node}
    assert not ops & {"BatchNormalization", "LeakyRelu"}
    assert len(model.graph.node) < 116  # the reference's count after onnxsim
    assert path.stat().st_size <= 2.1e6
    assert report.verify_images == 16


def test_torch_vs_onnxruntime_on_real_images(exported):
    _, report = exported
    assert report.ort_vs_torch_max_abs <= 1e-4
    # the fixture puts many pixels near the threshold: a rounding flip there is allowed (the export
    # refuses any flip farther than its tolerance), so agreement is near 1, not exactly 1
    assert report.mask_agreement >= 0.9999
    assert report.fused_vs_trained_max_abs <= 1e-3


def test_metadata_round_trips_through_the_runtime_contract(exported, random_checkpoint):
    path, _ = exported
    metadata = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    contract = ModelContract.from_metadata(metadata)
    assert contract.to_metadata() == metadata  # every key read back, nothing lost
    assert contract.label == "lesion" and contract.precision == "fp32"
    assert contract.input_height == contract.input_width == 256
    assert contract.model_config["combination"] == "II"
    import hashlib

    assert contract.source_sha256 == hashlib.sha256(random_checkpoint.read_bytes()).hexdigest()
    assert set(contract.versions) >= {"torch", "onnx", "onnxruntime"}


def _torch_reference(checkpoint, contract, rgb):
    """Probability and mask at the image's own size from the fused torch model, through the runtime's
    pre- and post-processing (the reference the ONNX file must reproduce)."""
    from lvunet_runtime.processing import postprocess, preprocess

    from lvunet_edge import load_checkpoint

    fused = reparameterize_model(load_checkpoint(checkpoint)[0])
    with torch.no_grad():
        logits = fused(torch.from_numpy(preprocess([rgb], contract)))[0, 0].numpy()
    return postprocess(logits, rgb.shape[:2], contract.threshold)


def test_segmenter_masks_equal_torch_reference(exported, random_checkpoint):
    """Runtime masks at the image's own size equal torch's through the same pre/post-processing."""
    from lvunet_runtime import Segmenter, load_image

    from tests.helpers import assert_masks_equal_off_threshold

    path, _ = exported
    segmenter = Segmenter(path)
    paths = sorted((DATA / "images").iterdir())[:6]
    assert len(paths) == 6
    for image_path in paths:
        rgb, _ = load_image(image_path)
        probability, expected = _torch_reference(random_checkpoint, segmenter.contract, rgb)
        prediction = segmenter.predict(rgb)
        assert np.abs(prediction.probability - probability).max() < 1e-4, image_path.name
        assert_masks_equal_off_threshold(prediction.mask, expected, probability, 0.7)


def test_a_threshold_other_than_half_reaches_training_export_and_runtime(
    exported, random_checkpoint
):
    """The checkpoint's contract says 0.7: the export writes 0.7 and checks its masks at 0.7, the
    runtime applies 0.7, and training's scoring (``masks_of``) picks the same pixels; at 0.7 the masks
    differ clearly from those at 0.5, so none of this can hold by accident."""
    from lvunet_runtime import Segmenter, load_image
    from lvunet_runtime.processing import preprocess, sigmoid

    from lvunet_edge import load_checkpoint
    from lvunet_edge.evaluation import masks_of
    from tests.helpers import assert_masks_equal_off_threshold

    path, report = exported
    segmenter = Segmenter(path)
    assert segmenter.contract.threshold == segmenter.threshold == 0.7
    assert report.mask_agreement >= 0.9999
    fused = reparameterize_model(load_checkpoint(random_checkpoint)[0]).eval()
    paths = sorted((DATA / "images").iterdir())[:4]
    assert len(paths) == 4
    for image_path in paths:
        rgb, _ = load_image(image_path)
        probability, expected = _torch_reference(random_checkpoint, segmenter.contract, rgb)
        mask = segmenter.predict(rgb).mask
        assert_masks_equal_off_threshold(mask, expected, probability, 0.7)
        assert (mask != (probability > 0.5)).mean() > 0.05  # 0.7 is not 0.5
        x = preprocess([rgb], segmenter.contract)
        with torch.no_grad():
            logits = fused(torch.from_numpy(x))[0, 0].numpy()
        model_size = segmenter.finish(segmenter.run(x)[0], logits.shape)
        assert_masks_equal_off_threshold(
            model_size.mask, masks_of(logits, segmenter.contract), sigmoid(logits), 0.7
        )


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_precision_variants(random_checkpoint, tmp_path, precision):
    out = tmp_path / f"{precision}.onnx"
    report = export_onnx(
        random_checkpoint,
        out,
        precision=precision,
        calib=DATA / "images",
        verify_images=DATA / "images",
    )
    assert out.is_file() and report.dice_vs_fp32 is not None and report.notes
    ops = {n.op_type for n in onnx.load(str(out)).graph.node}
    if precision == "int8":
        assert "QuantizeLinear" in ops
    else:
        graph = onnx.load(str(out)).graph
        assert (
            graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
        )  # float32 I/O kept
        assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in graph.initializer)


def test_failed_parity_leaves_no_file(random_checkpoint, tmp_path, monkeypatch):
    import lvunet_export.export as export_module

    monkeypatch.setattr(export_module, "FP32_TOLERANCE", 0.0)
    out = tmp_path / "model.onnx"
    with pytest.raises(ExportError):
        export_onnx(random_checkpoint, out, verify_images=DATA / "images")
    assert list(tmp_path.iterdir()) == []


def _cli(*args, prelude=""):
    """lvunet-export in process through the real entry wrapper; in a fresh interpreter when a prelude is given."""
    if prelude:
        code = f"{prelude}\nimport sys\nfrom lvunet_export.cli import main\nsys.argv = ['lvunet-export', *{list(map(str, args))!r}]\nmain()"
        return subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=300
        )
    from tests.helpers import cli

    return cli("export", *args)


def _one_line_error(result, expected):
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lvunet-export: error:"), result.stderr
    assert expected in lines[0]


def test_cli_error_paths(tmp_path, random_checkpoint):
    out = tmp_path / "m.onnx"
    _one_line_error(_cli("--ckpt", tmp_path / "missing.pt", "--out", out), "not found")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(random_checkpoint.read_bytes()[:5000])
    _one_line_error(_cli("--ckpt", corrupt, "--out", out), "not a readable")
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    _one_line_error(_cli("--ckpt", other, "--out", out), "not an LV-UNet checkpoint")
    model = build_model()
    set_act_slope(model, 0.5)
    half = tmp_path / "half.pt"
    save_checkpoint(half, model)
    _one_line_error(_cli("--ckpt", half, "--out", out), "slope is 0.5, not 1.0")
    set_act_slope(model, 1.0)
    fused = tmp_path / "fused.pt"
    save_checkpoint(fused, reparameterize_model(randomize_bn(model)))
    _one_line_error(_cli("--ckpt", fused, "--out", out), "already fused")
    _one_line_error(
        _cli("--ckpt", random_checkpoint, "--out", tmp_path / "no" / "m.onnx"), "not writable"
    )
    out.write_text("keep me")
    _one_line_error(_cli("--ckpt", random_checkpoint, "--out", out), "--overwrite")
    assert out.read_text() == "keep me"
    _one_line_error(
        _cli(
            "--ckpt",
            random_checkpoint,
            "--out",
            tmp_path / "n.onnx",
            prelude="import sys; sys.modules['onnxsim'] = None",
        ),
        "onnxsim is not installed",
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "corrupt.pt",
        "fused.pt",
        "half.pt",
        "m.onnx",
        "other.pt",
    ]


def test_cli_happy_path_prints_summary(tmp_path, random_checkpoint):
    out = tmp_path / "m.onnx"
    result = _cli(
        "--ckpt",
        random_checkpoint,
        "--out",
        out,
        "--no-simplify",
        "--verify-images",
        DATA / "images",
    )
    assert result.returncode == 0, result.stderr
    assert (
        "ONNX Runtime vs torch" in result.stdout
        and "lvunet-infer" in result.stdout
        and out.is_file()
    )


def test_cli_bad_verification_images(tmp_path, random_checkpoint):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.jpg").write_text("junk")
    _one_line_error(
        _cli("--ckpt", random_checkpoint, "--out", tmp_path / "m.onnx", "--verify-images", bad),
        "verification image unusable",
    )
    assert not (tmp_path / "m.onnx").exists()
