"""The metadata contract: round trips, every field validated with a one-line message, versions."""

import json

import pytest
from lvunet_runtime.contract import CONTRACT_VERSION, ModelContract
from lvunet_runtime.errors import ModelError


def _metadata(**changes) -> dict[str, str]:
    metadata = ModelContract(
        training_size=(256, 256),
        test_metrics={"iou": 0.5},
        training_image_sha256=("0123456789abcdef",),
        training_recipe={"epochs": 80, "augment": "basic", "ema": 0.0, "pretrained": False},
    ).to_metadata()
    for key, value in changes.items():
        if value is None:
            metadata.pop(f"lvunet.{key}", None)  # (empty optional fields are left out already)
        else:
            metadata[f"lvunet.{key}"] = json.dumps(value)
    return metadata


def test_round_trips():
    contract = ModelContract(
        input_height=384,
        input_width=512,
        channel_order="BGR",
        mean=(0.5, 0.5, 0.5),
        training_size=(256, 256),
        test_metrics={"iou": 0.7},
        label="polyp",
    )
    assert ModelContract.from_metadata(contract.to_metadata()) == contract
    assert ModelContract.from_dict(contract.to_dict()) == contract
    json.dumps(contract.to_dict())  # plain data, fit for JSON and weights_only checkpoints
    assert contract.input_size == (384, 512)


def test_empty_optional_fields_are_left_out():
    metadata = ModelContract().to_metadata()
    assert "lvunet.test_metrics" not in metadata and "lvunet.training_size" not in metadata
    assert ModelContract.from_metadata(metadata) == ModelContract()


@pytest.mark.parametrize("version", ["1", "2", "3", "4", "5"])
def test_earlier_versions_still_load(version):
    """Files written under earlier versions (users have exported such files) keep loading; what a
    version lacks takes its default (``input_colour`` "" before 5: no input guard; ``output_resize``
    "linear" before 6: what the runtime always did)."""
    dropped = {"training_image_sha256": None, "training_recipe": None, "input_colour": None}
    if version == "3":
        dropped = {"training_recipe": None, "input_colour": None}
    if version == "4":
        dropped = {"input_colour": None}
    if version == "5":
        dropped = {"input_colour": "colour"}
    dropped["output_resize"] = None
    if version == "1":
        dropped.update(training_size=None, test_metrics=None)
    contract = ModelContract.from_metadata(_metadata(contract_version=version, **dropped))
    assert contract.contract_version == version and contract.output_resize == "linear"
    assert contract.input_colour == ("colour" if version == "5" else "")
    assert (contract.training_recipe == {}) == (version not in ("4", "5"))
    assert (contract.training_image_sha256 == ()) == (version not in ("3", "4", "5"))
    assert (contract.training_size is None) == (version == "1")
    assert CONTRACT_VERSION == "6"
    assert "lvunet.output_resize" in ModelContract().to_metadata()  # version 6 writes it


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"contract_version": "9"}, "contract '9'"),
        ({"output_resize": "area"}, "output_resize must be one of ('linear',)"),
        ({"training_recipe": {"epochs": [1, 2]}}, "training_recipe must map names to plain values"),
        ({"training_recipe": ["strong"]}, "training_recipe must map names"),
        ({"training_recipe": {"lr": float("nan")}}, "training_recipe"),
        ({"input_height": 100000}, "input_height must be a positive multiple of 128 up to 4096"),
        ({"input_height": 0}, "input_height must be a positive multiple of 128"),
        ({"input_width": 200}, "input_width must be a positive multiple of 128"),
        ({"input_width": "256"}, "not '256'"),
        ({"input_height": True}, "input_height"),
        ({"std": [0, 0, 0]}, "std must be positive"),
        ({"std": [0.2, 0.2]}, "std must be three numbers"),
        ({"mean": [0.4, 0.4]}, "mean must be three numbers"),
        ({"mean": ["0.4", 0.4, 0.4]}, "mean must be three numbers"),
        ({"resize_interpolation": "lanczos9"}, "resize_interpolation must be one of"),
        ({"channel_order": "GBR"}, "channel_order must be one of"),
        ({"output_meaning": "energy"}, "output_meaning must be one of"),
        ({"threshold": 1.5}, "threshold must be a number strictly between 0 and 1"),
        ({"threshold": 1.0}, "threshold must be a number strictly between 0 and 1"),
        ({"threshold": 0.0}, "threshold must be a number strictly between 0 and 1"),
        ({"threshold": "0.5"}, "threshold must be a number"),
        ({"pixel_scale": -1}, "pixel_scale must be a positive number"),
        ({"input_layout": "uint8-nhwc"}, "input_layout 'uint8-nhwc' is not supported"),
        ({"input_name": ""}, "input_name must be a non-empty string"),
        ({"dynamic_batch": "yes"}, "dynamic_batch must be true or false"),
        ({"training_size": [128]}, "training_size must be two positive integers"),
        ({"model_config": [1, 2]}, "model_config must be a mapping"),
        ({"precision": "fp8"}, "precision must be one of"),
        ({"output_name": None}, "missing ['output_name']"),
        (
            {"training_image_sha256": ["xyz"]},
            "training_image_sha256 must be a list of 16-digit hex",
        ),
    ],
)
def test_invalid_fields_are_one_line_model_errors(changes, message):
    with pytest.raises(ModelError) as info:
        ModelContract.from_metadata(_metadata(**changes), source="m.onnx")
    text = str(info.value)
    assert message in text and "\n" not in text and text.startswith("m.onnx")


def test_malformed_json_and_missing_contract():
    metadata = _metadata()
    metadata["lvunet.mean"] = "[0.4, 0.4"
    with pytest.raises(ModelError, match="lvunet.mean is not JSON"):
        ModelContract.from_metadata(metadata)
    with pytest.raises(ModelError, match="lacks the LV-UNet metadata contract"):
        ModelContract.from_metadata({"producer": "someone"})


def test_construction_validates_too():
    with pytest.raises(ModelError, match="std must be positive"):
        ModelContract(std=(0.2, 0.0, 0.2))
    with pytest.raises(ModelError, match="unknown model contract field"):
        ModelContract.from_dict({**ModelContract().to_dict(), "colour": "red"})


def test_the_input_guard_warns_on_a_grey_image_for_a_colour_model_and_the_reverse():
    import numpy as np
    from lvunet_runtime.contract import dataset_colour, image_colour, input_warning

    rng = np.random.default_rng(0)
    grey = np.repeat(rng.integers(0, 256, (64, 80, 1), dtype=np.uint8), 3, axis=2)
    noisy_grey = np.clip(grey.astype(int) + rng.integers(-4, 5, grey.shape), 0, 255).astype(
        np.uint8
    )
    annotated = grey.copy()
    annotated[:2, :10] = (255, 255, 0)  # a yellow marker on an ultrasound frame: 0.4% of it
    colour = rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)
    assert [image_colour(x) for x in (grey, noisy_grey, annotated, colour)] == ["grey"] * 3 + [
        "colour"
    ]
    colour_model = ModelContract(input_colour="colour", training_dataset="Kvasir-SEG")
    grey_model = ModelContract(input_colour="grey", training_dataset="BUSI")
    assert "a grey image sent to a model trained on colour images (Kvasir-SEG)" in input_warning(
        colour_model, grey
    )
    assert "a colour image sent to a model trained on grey images (BUSI)" in input_warning(
        grey_model, colour
    )
    assert (
        input_warning(colour_model, colour) is None and input_warning(grey_model, annotated) is None
    )
    assert input_warning(ModelContract(), grey) is None  # not recorded (before version 5): no guard
    assert dataset_colour(["grey"] * 95 + ["colour"] * 5) == "grey"
    assert dataset_colour(["grey"] * 50 + ["colour"] * 50) == ""
    with pytest.raises(ModelError, match="input_colour must be one of"):
        ModelContract(input_colour="sepia")
