"""One contract from training to runtime: the training input equals the runtime's, the checkpoint records
the contract, the export follows it and measures accuracy on the written file, and every contract field
is honoured (hand-edited models, made here with onnx) or refused with one line."""

import json
import shutil

import numpy as np
import onnx
import pytest
import torch
from lvunet_export.export import ExportError, export_onnx
from lvunet_runtime import Segmenter, load_image
from lvunet_runtime.contract import ModelContract
from lvunet_runtime.data import find_pairs
from lvunet_runtime.evaluate import evaluate
from lvunet_runtime.model_files import MODELS_DIR
from onnx import helper

from lvunet_edge.dataset import load_dataset, to_input
from tests.helpers import (
    BUSI_IMAGE,
    DATA,
    KVASIR_IMAGE,
    RawJSON,
    assert_one_line_error,
    checksums,
    cli,
    edit_metadata,
    nan_weights_model,
    write_pair,
)

POLYP = MODELS_DIR / "polyp.onnx"


def _runtime_input(segmenter: Segmenter, path) -> np.ndarray:
    """The exact tensor the Segmenter feeds its session for this image file."""
    fed = []
    real = segmenter.run
    segmenter.run = lambda batch: fed.append(batch.copy()) or real(batch)
    segmenter.predict(load_image(path)[0])
    return fed[0]


def _training_input(contract: ModelContract, path, folder) -> np.ndarray:
    """The exact tensor lvunet-train feeds its model for this image file."""
    from PIL import Image

    write_pair(folder, "x", Image.open(path), Image.new("L", Image.open(path).size))
    dataset = load_dataset(find_pairs(folder), contract)
    return to_input(torch.from_numpy(dataset.images), contract).numpy()


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {
            "mean": [0.5, 0.4, 0.3],
            "std": [0.25, 0.5, 0.125],
            "channel_order": "BGR",
            "resize_interpolation": "linear",
            "pixel_scale": 0.01,
        },
    ],
)
def test_training_input_equals_runtime_input(tmp_path, changes):
    model = edit_metadata(POLYP, tmp_path / "m.onnx", **changes) if changes else POLYP
    segmenter = Segmenter(model)
    image = tmp_path / "in.png"
    load_image_rgb = load_image(KVASIR_IMAGE)[0]
    from PIL import Image

    Image.fromarray(load_image_rgb).save(image)  # lossless, so both sides read the same pixels
    runtime = _runtime_input(segmenter, image)
    training = _training_input(segmenter.contract, image, tmp_path / "data")
    assert runtime.shape == training.shape == (1, 3, 256, 256)
    assert np.abs(runtime - training).max() <= 1e-6
    # The check can fail: the other side's normalisation alone moved differs by far more.
    other = ModelContract(mean=(0.4, 0.4, 0.4), std=segmenter.contract.std)
    assert np.abs(_training_input(other, image, tmp_path / "other") - runtime).max() > 1e-2


def test_checkpoint_records_its_contract_and_export_follows_it(trained_run, tmp_path):
    run_dir, _ = trained_run
    checkpoint = torch.load(run_dir / "best.pt", weights_only=True)
    recorded = ModelContract.from_dict(checkpoint["contract"])
    assert recorded.input_size == recorded.training_size == (128, 128)
    out = tmp_path / "m.onnx"
    report = export_onnx(run_dir / "best.pt", out)
    assert report.input_size == (128, 128) and not any("differ" in n for n in report.notes)
    contract = Segmenter(out).contract
    assert contract.input_size == (128, 128) and contract.training_size == (128, 128)
    for key in ("mean", "std", "resize_interpolation", "channel_order", "pixel_scale", "threshold"):
        assert getattr(contract, key) == getattr(recorded, key), key
    graph_input = onnx.load(str(out)).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in graph_input][1:] == [3, 128, 128]
    # How it trained travels with it (contract v4): the run's settings, as lvunet-train recorded them.
    recipe, config = contract.training_recipe, checkpoint["train_config"]
    assert (
        recipe == recorded.training_recipe and recipe["augment"] == "basic" and recipe["ema"] == 0.0
    )
    assert (
        recipe["epochs"] == config["epochs"] == 6 and recipe["batch_size"] == config["batch_size"]
    )
    assert recipe["deep_epochs"] == 5 and recipe["pretrained"] is False
    # The accuracy in the file is measured on the file: it equals lvunet-eval on the same split.
    split = json.loads((run_dir / "split.json").read_text())
    measured = evaluate(Segmenter(out), find_pairs(DATA, split["test"]))
    for key in ("images", "iou", "dice", "dataset_iou", "precision", "recall"):
        assert contract.test_metrics[key] == measured[key], key
    assert contract.test_metrics["measured_on"].startswith("this file")
    finds_nothing = any("predicts no foreground on any of the" in n for n in report.notes)
    assert finds_nothing == (measured["precision"] is None)  # said exactly when it is so
    (tmp_path / "ids.txt").write_text("\n".join(split["test"]) + "\n")
    result = cli("eval", "--model", out, "--data", DATA, "--split-file", tmp_path / "ids.txt")
    assert result.exit_code == 0 and f"IoU {contract.test_metrics['iou']:.4f}" in result.stdout


def test_other_size_only_when_asked_and_said(trained_run, tmp_path):
    run_dir, _ = trained_run
    report = export_onnx(run_dir / "best.pt", tmp_path / "m.onnx", image_size=256, simplify=False)
    assert report.input_size == (256, 256)
    assert any("trained at 128x128" in note for note in report.notes)
    assert Segmenter(tmp_path / "m.onnx").contract.training_size == (128, 128)


def _edited_checkpoint(source, target, edit):
    payload = torch.load(source, weights_only=True)
    edit(payload)
    torch.save(payload, target)
    return target


def test_old_checkpoint_without_contract_still_exports(trained_run, tmp_path):
    run_dir, _ = trained_run
    old = _edited_checkpoint(run_dir / "best.pt", tmp_path / "old.pt", lambda p: p.pop("contract"))
    report = export_onnx(old, tmp_path / "m.onnx", simplify=False)
    assert report.input_size == (128, 128)  # from its train_config
    assert any("predates recorded contracts" in note for note in report.notes)
    assert (
        Segmenter(tmp_path / "m.onnx").contract.training_recipe["epochs"] == 6
    )  # from train_config


def test_accuracy_needs_the_data(trained_run, tmp_path):
    run_dir, _ = trained_run
    moved = _edited_checkpoint(
        run_dir / "best.pt",
        tmp_path / "moved.pt",
        lambda p: p["train_config"].update(data=str(tmp_path / "gone")),
    )
    report = export_onnx(moved, tmp_path / "a.onnx", simplify=False)
    assert any("pass --data DIR" in note for note in report.notes)
    keys = {p.key for p in onnx.load(str(tmp_path / "a.onnx")).metadata_props}
    assert (
        "lvunet.test_metrics" not in keys
        and Segmenter(tmp_path / "a.onnx").contract.test_metrics == {}
    )
    report = export_onnx(moved, tmp_path / "b.onnx", simplify=False, data=DATA)
    assert report.test_metrics["images"] == len(
        json.loads((run_dir / "split.json").read_text())["test"]
    )


def _with_nodes(target, before=None, after=None, **metadata):
    """The bundled polyp graph with a node inserted before its input or after its output."""
    model = onnx.load(str(POLYP))
    graph = model.graph
    if before is not None:
        graph.input[0].name = "raw"
        graph.node.insert(0, before)
    if after is not None:
        graph.output[0].name = "out"
        graph.node.append(after)
    onnx.save(model, str(target))
    return edit_metadata(target, target, **metadata)


def test_bgr_and_probability_files_run_correctly(tmp_path):
    reorder = helper.make_node("Gather", ["raw", "bgr_index"], ["image"], axis=1)
    model = onnx.load(str(POLYP))
    model.graph.initializer.append(
        onnx.numpy_helper.from_array(np.array([2, 1, 0], np.int64), "bgr_index")
    )
    onnx.save(model, str(tmp_path / "base.onnx"))
    bgr = tmp_path / "bgr.onnx"
    m = onnx.load(str(tmp_path / "base.onnx"))
    m.graph.input[0].name = "raw"
    m.graph.node.insert(0, reorder)
    onnx.save(m, str(bgr))
    # mean/std are per channel in channel_order: a BGR file lists them B, G, R
    contract = ModelContract()
    edit_metadata(
        bgr,
        bgr,
        channel_order="BGR",
        input_name="raw",
        mean=list(contract.mean[::-1]),
        std=list(contract.std[::-1]),
    )
    prob = _with_nodes(
        tmp_path / "prob.onnx",
        after=helper.make_node("Sigmoid", ["logits"], ["out"]),
        output_meaning="probability",
        output_name="out",
    )
    reference = Segmenter("polyp")
    assert reference.predict(load_image(KVASIR_IMAGE)[0]).mask.mean() > 0.01  # not an empty mask
    for path in (KVASIR_IMAGE, BUSI_IMAGE):
        rgb = load_image(path)[0]
        expected = reference.predict(rgb)
        for model_path in (bgr, prob):
            got = Segmenter(model_path).predict(rgb)
            assert np.abs(got.probability - expected.probability).max() < 1e-5, model_path.name
            assert np.array_equal(got.mask, expected.mask), model_path.name


def _refused(model, expected, tmp_path):
    before = checksums(tmp_path)
    result = cli("infer", BUSI_IMAGE, "--model", model, "--out", tmp_path / "o")
    assert_one_line_error(result.exit_code, result.stderr, expected, "lvunet-infer")
    assert checksums(tmp_path) == before  # nothing written, nothing changed


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"input_height": 100000}, "input_height must be a positive multiple of 128 up to 4096"),
        ({"input_height": 384}, "does not match the metadata"),
        ({"std": [0, 0, 0]}, "std must be positive"),
        ({"mean": [0.5, 0.5]}, "mean must be three numbers"),
        ({"input_width": 0}, "input_width must be a positive multiple"),
        ({"resize_interpolation": "lanczos9"}, "resize_interpolation must be one of"),
        ({"threshold": RawJSON('"0.5"')}, "threshold must be a number"),
        ({"output_name": "mask"}, "metadata names output 'mask'"),
        ({"input_name": "pixels"}, "metadata names input 'pixels'"),
        ({"contract_version": "7"}, "uses metadata contract '7'"),
        ({"mean": RawJSON("[0.4,")}, "lvunet.mean is not JSON"),
    ],
)
def test_hand_edited_metadata_is_refused_in_one_line(tmp_path, changes, expected):
    _refused(edit_metadata(POLYP, tmp_path / "edited.onnx", **changes), expected, tmp_path)


def test_wrong_channel_count_and_broken_weights_are_refused(tmp_path):
    model = onnx.load(str(POLYP))
    model.graph.input[0].type.tensor_type.shape.dim[1].dim_value = 4
    onnx.save(model, str(tmp_path / "four.onnx"))
    from lvunet_runtime.errors import ModelError

    with pytest.raises(ModelError):  # by ONNX Runtime's shape check or by ours, before any image
        Segmenter(tmp_path / "four.onnx")
    _refused(nan_weights_model(POLYP, tmp_path / "nan.onnx"), "non-finite output", tmp_path)


def test_export_refuses_non_finite_weights(random_checkpoint, tmp_path):
    poisoned = _edited_checkpoint(
        random_checkpoint,
        tmp_path / "nan.pt",
        lambda p: p["state_dict"][
            "head.weight"
            if "head.weight" in p["state_dict"]
            else next(k for k, v in p["state_dict"].items() if v.is_floating_point())
        ].fill_(float("nan")),
    )
    with pytest.raises(ExportError, match="non-finite weights"):
        export_onnx(poisoned, tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


def test_export_refuses_to_write_over_its_checkpoint(random_checkpoint, tmp_path):
    copy = tmp_path / "best.pt"
    shutil.copy(random_checkpoint, copy)
    before = copy.read_bytes()
    with pytest.raises(ExportError, match="is the checkpoint itself"):
        export_onnx(copy, copy, overwrite=True)
    with pytest.raises(ExportError, match="is a folder"):
        export_onnx(copy, tmp_path)
    assert copy.read_bytes() == before


def test_eval_names_the_images_the_model_was_trained_on(trained_run, tmp_path):
    run_dir, _ = trained_run
    out = tmp_path / "m.onnx"
    export_onnx(run_dir / "best.pt", out, simplify=False)
    split = json.loads((run_dir / "split.json").read_text())
    seen = set(split["train"]) | set(split["val"])
    assert len(Segmenter(out).contract.training_image_sha256) == len(seen)
    report = tmp_path / "r.json"
    result = cli("eval", "--model", out, "--data", DATA, "--json", report)
    assert result.exit_code == 0
    assert f"{len(seen)} of 16 images were in the model's training data" in result.stderr
    data = json.loads(report.read_text())
    assert set(data["in_training"]) == seen
    assert data["not_in_training"]["images"] == len(split["test"])
