"""DICOM in and out (make test-dicom: the [dicom] extra, imagecodecs for JPEG Lossless test files, Debian's
dciodvfy). Every file is made here from the sample images; each interpretation and transfer syntax is read
back equal to the pixels the PNG path gives; every SEG written is read back (highdicom) with its frames
equal to the masks and its references right, and dciodvfy reports no error in it."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.dicom
pydicom = pytest.importorskip("pydicom", reason="the [dicom] extra (make test-dicom)")
highdicom = pytest.importorskip("highdicom", reason="the [dicom] extra (make test-dicom)")

from lvunet_runtime.image import decode_image, load_image  # noqa: E402

from tests.dicom.files import (  # noqa: E402
    SECONDARY_CAPTURE,
    US_MULTIFRAME,
    VL_ENDOSCOPIC,
    colour_pixels,
    compressed,
    dataset,
    grey_pixels,
    save,
)
from tests.helpers import assert_one_line_error, cli  # noqa: E402

EXPLICIT = "1.2.840.10008.1.2.1"
IMPLICIT = "1.2.840.10008.1.2"
RLE = "1.2.840.10008.1.2.5"
JPEG_LS = "1.2.840.10008.1.2.4.80"
J2K_LOSSLESS = "1.2.840.10008.1.2.4.90"
JPEG_LOSSLESS_SV1 = "1.2.840.10008.1.2.4.70"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
PATIENT = ("Doe^Jane", "P-4711")


def _png_path(pixels: np.ndarray, tmp_path: Path) -> np.ndarray:
    """What the image reader gives for the same pixels saved as PNG (the reference of every case)."""
    Image.fromarray(pixels).save(tmp_path / "same.png")
    return load_image(tmp_path / "same.png")[0]


def _dicom_path(ds, tmp_path: Path, name: str = "IM0001") -> np.ndarray:
    path = tmp_path / name  # PACS style: no extension
    save(ds, path)
    return load_image(path)[0]


@pytest.mark.parametrize("syntax", [EXPLICIT, IMPLICIT, RLE, JPEG_LS, J2K_LOSSLESS])
@pytest.mark.parametrize("kind", ["RGB", "MONOCHROME2"])
def test_lossless_syntaxes_read_back_equal_to_the_png_path(tmp_path, syntax, kind):
    pixels = colour_pixels() if kind == "RGB" else grey_pixels()
    ds = dataset(pixels, kind)
    if syntax == IMPLICIT:
        ds.file_meta.TransferSyntaxUID = IMPLICIT
    else:
        ds = compressed(ds, syntax)
    assert np.array_equal(_dicom_path(ds, tmp_path), _png_path(pixels, tmp_path))


def test_jpeg_lossless_sv1_greyscale_reads_back_equal(tmp_path):
    pixels = grey_pixels()
    ds = compressed(dataset(pixels, "MONOCHROME2"), JPEG_LOSSLESS_SV1)
    assert np.array_equal(_dicom_path(ds, tmp_path), _png_path(pixels, tmp_path))


def test_jpeg_baseline_reads_as_pillow_decodes_the_same_stream(tmp_path):
    """Lossy: the reference is Pillow's decoding of the very JPEG frame inside the file (two libjpeg
    builds may differ by a few levels at edges in YCbCr upsampling)."""
    ds = compressed(dataset(colour_pixels(), "RGB"), JPEG_BASELINE)
    from pydicom.encaps import generate_frames

    frame = next(generate_frames(ds.PixelData, number_of_frames=1))
    reference = np.asarray(Image.open(io.BytesIO(frame)).convert("RGB")).astype(int)
    read = _dicom_path(ds, tmp_path).astype(int)
    assert ds.PhotometricInterpretation == "YBR_FULL_422"
    assert np.abs(read - reference).max() <= 5 and np.abs(read - reference).mean() < 0.5


def test_ybr_full_uncompressed_is_converted_to_rgb(tmp_path):
    from pydicom.pixels import convert_color_space

    pixels = colour_pixels()
    ybr = convert_color_space(pixels, "RGB", "YBR_FULL")
    read = _dicom_path(dataset(ybr, "YBR_FULL"), tmp_path).astype(int)
    assert np.abs(read - pixels.astype(int)).max() <= 2  # the colour transform's rounding


def test_monochrome1_is_inverted_and_a_window_is_applied(tmp_path):
    grey = grey_pixels()
    inverted = _dicom_path(dataset(255 - grey, "MONOCHROME1"), tmp_path)
    assert np.array_equal(inverted, _png_path(grey, tmp_path))  # 0 is white in MONOCHROME1
    twelve = (grey.astype(np.uint16) * 16).astype(np.uint16)  # 12 bits stored in 16
    ds = dataset(twelve, "MONOCHROME2")
    ds.BitsStored, ds.HighBit = 12, 11
    full_range = _dicom_path(ds, tmp_path, "IM12")[..., 0].astype(int)
    assert np.abs(full_range - np.round(twelve / 4095 * 255)).max() <= 1
    ds.WindowCenter, ds.WindowWidth = 2048, 1024  # the file's own window: 1536..2560 spread out
    windowed = _dicom_path(ds, tmp_path, "IMW")[..., 0]
    assert windowed.min() == 0 and windowed.max() == 255 and (windowed == 255).mean() > 0.01


def test_palette_colour_is_looked_up(tmp_path):
    from pydicom.pixels import apply_color_lut

    index = (grey_pixels() // 32).astype(np.uint8)  # 8 palette entries
    ds = dataset(index, "MONOCHROME2")
    ds.PhotometricInterpretation = "PALETTE COLOR"
    lut = np.array([[i * 36 % 256, (255 - i * 36) % 256, i * 90 % 256] for i in range(256)])
    lut = (lut * 257).astype(np.uint16)
    for channel, name in enumerate(("Red", "Green", "Blue")):
        setattr(ds, f"{name}PaletteColorLookupTableDescriptor", [256, 0, 16])
        setattr(ds, f"{name}PaletteColorLookupTableData", lut[:, channel].astype("<u2").tobytes())
    expected = (apply_color_lut(index, ds) / 257).round().astype(np.uint8)
    assert np.array_equal(_dicom_path(ds, tmp_path), expected)


def _cine(frames: int = 4):
    grey = grey_pixels()
    stack = np.stack([np.roll(grey, 8 * i, axis=1) for i in range(frames)])
    return dataset(stack, "MONOCHROME2", US_MULTIFRAME, frames=frames), stack


def _folder(tmp_path: Path) -> Path:
    """A PACS-style export: extension-less and UID-named files, an endoscopic image, a cine loop."""
    folder = tmp_path / "export"
    folder.mkdir()
    save(dataset(grey_pixels(), "MONOCHROME2"), folder / "IM0001")
    save(compressed(dataset(grey_pixels(), "MONOCHROME2"), RLE), folder / "IM0002")
    save(dataset(colour_pixels(), "RGB", VL_ENDOSCOPIC), folder / "1.2.840.113619.2.55.3.7")
    save(_cine()[0], folder / "IM0003")
    return folder


def _dciodvfy_errors(path: Path) -> list[str]:
    result = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    return [
        line for line in (result.stdout + result.stderr).splitlines() if line.startswith("Error")
    ]


def test_a_pacs_folder_gives_masks_and_seg_objects_a_toolkit_reads_back(tmp_path):
    if shutil.which("dciodvfy") is None:
        pytest.fail("dciodvfy missing: make test-dicom installs Debian's dicom3tools")
    folder, out = _folder(tmp_path), tmp_path / "out"
    result = cli("infer", folder, "--out", out, "--dicom-seg", "--model", "breast-ultrasound")
    assert result.exit_code == 0, result.stderr
    assert "3 images segmented" in result.stdout and "1 video, 4 frames" in result.stdout
    series = set()
    for stem in ("IM0001", "IM0002", "1.2.840.113619.2.55.3.7"):  # the UID name kept whole
        source = pydicom.dcmread(folder / stem)
        seg = highdicom.seg.segread(out / f"{stem}_seg.dcm")
        mask = np.asarray(Image.open(out / f"{stem}_mask.png")) > 0
        pixels = seg.get_pixels_by_source_instance(
            source_sop_instance_uids=[source.SOPInstanceUID], segment_numbers=[1]
        )
        assert np.array_equal(pixels[0, ..., 0] > 0, mask) and mask.any()
        assert (seg.StudyInstanceUID, seg.PatientID) == (source.StudyInstanceUID, source.PatientID)
        assert seg.SeriesInstanceUID != source.SeriesInstanceUID
        algorithm = seg.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0]
        assert algorithm.AlgorithmName.startswith("LV-UNet breast-ultrasound sha256:")
        series.add(seg.SeriesInstanceUID)
        assert _dciodvfy_errors(out / f"{stem}_seg.dcm") == []
    cine = highdicom.seg.segread(out / "IM0003_seg.dcm")
    source = pydicom.dcmread(folder / "IM0003")
    frames = cine.get_pixels_by_source_frame(
        source_sop_instance_uid=source.SOPInstanceUID,
        source_frame_numbers=[1, 2, 3, 4],
        segment_numbers=[1],
    )
    areas = [
        int(row.split(",")[1]) for row in (out / "IM0003_frames.csv").read_text().splitlines()[1:]
    ]
    assert [int(f.sum()) for f in frames[..., 0]] == areas  # frame by frame, as the CSV counts
    assert cine.SeriesInstanceUID in series and len(series) == 1  # one new series for the run
    assert _dciodvfy_errors(out / "IM0003_seg.dcm") == []
    again = cli("infer", folder, "--out", tmp_path / "out2", "--dicom-seg")
    second = highdicom.seg.segread(tmp_path / "out2" / "IM0001_seg.dcm")
    assert again.exit_code == 0 and second.SeriesInstanceUID not in series  # a new series per run


def test_patient_data_never_leaves_the_seg(tmp_path):
    folder, out = _folder(tmp_path), tmp_path / "out"
    result = cli("infer", folder, "--out", out, "--dicom-seg", "--json", "--overlay")
    assert result.exit_code == 0, result.stderr
    for path in out.rglob("*"):
        if path.is_file() and not path.name.endswith("_seg.dcm"):
            data = path.read_bytes()
            assert not any(value.encode() in data for value in PATIENT), path
    assert not any(value in result.stdout + result.stderr for value in PATIENT)
    assert PATIENT[1].encode() in (out / "IM0001_seg.dcm").read_bytes()  # where it belongs


def test_a_rerun_keeps_the_segs_and_does_the_rest(tmp_path):
    folder, out = _folder(tmp_path), tmp_path / "out"
    assert cli("infer", folder, "--out", out, "--dicom-seg").exit_code == 0
    before = (out / "IM0001_seg.dcm").read_bytes()
    save(dataset(colour_pixels(), "RGB", SECONDARY_CAPTURE), folder / "IM0004")
    again = cli("infer", folder, "--out", out, "--dicom-seg")
    assert again.exit_code == 0 and "1 image segmented" in again.stdout, again.stdout
    assert (out / "IM0001_seg.dcm").read_bytes() == before and (out / "IM0004_seg.dcm").is_file()
    record = json.loads((out / "summary.json").read_text())
    assert "IM0001_seg.dcm" in record["outputs"] and "IM0004_seg.dcm" in record["outputs"]


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda: _report(), "DICOM Basic Text SR Storage, not an image; skipped"),
        (lambda: _directory(), "not an image; skipped"),
        (
            lambda: _with(PhotometricInterpretation="HSV"),
            "photometric interpretation HSV is not read",
        ),
        (lambda: _encapsulated("1.2.840.10008.1.2.4.100"), "transfer syntax MPEG2"),
        (lambda: save(dataset(grey_pixels(), "MONOCHROME2"))[:2000], "corrupt or truncated DICOM"),
    ],
    ids=["structured report", "DICOMDIR", "HSV", "MPEG-2", "truncated"],
)
def test_dicom_files_that_are_not_read_get_one_line_naming_why(tmp_path, make, words):
    data = make()
    (tmp_path / "IM0009").write_bytes(data)
    result = cli("infer", tmp_path / "IM0009", "--out", tmp_path / "out")
    assert_one_line_error(result.exit_code, result.stderr, words, "lvunet-infer")


def _report() -> bytes:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta, ds.SOPClassUID = meta, meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID, ds.Modality, ds.PatientName = (
        meta.MediaStorageSOPInstanceUID,
        "SR",
        PATIENT[0],
    )
    return save(ds)


def _directory() -> bytes:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.1.3.10"  # Media Storage Directory
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta, ds.FileSetID = meta, "EXPORT"
    return save(ds)


def _encapsulated(syntax: str) -> bytes:
    from pydicom.encaps import encapsulate

    ds = dataset(grey_pixels(), "MONOCHROME2")
    ds.PixelData = encapsulate([b"\0" * 64])
    ds["PixelData"].VR, ds["PixelData"].is_undefined_length = "OB", True
    ds.file_meta.TransferSyntaxUID = syntax
    return save(ds)


def _with(syntax: str | None = None, **changes) -> bytes:
    ds = dataset(grey_pixels(), "MONOCHROME2")
    for key, value in changes.items():
        setattr(ds, key, value)
    if syntax:
        ds.file_meta.TransferSyntaxUID = syntax
    return save(ds)


def test_lvunet_eval_scores_dicom_images_as_their_png_copies(tmp_path):
    from tests.helpers import copy_pairs

    png = copy_pairs("busi__", tmp_path / "png")
    dcm = tmp_path / "dcm"
    (dcm / "images").mkdir(parents=True)
    shutil.copytree(png / "masks", dcm / "masks")
    for path in sorted((png / "images").iterdir()):
        grey = np.asarray(Image.open(path).convert("L"))
        Image.fromarray(grey).save(path.with_suffix(".png"))
        path.unlink()
        save(dataset(grey, "MONOCHROME2"), dcm / "images" / f"{path.stem}.dcm")
    scores = []
    for folder in (png, dcm):
        report = tmp_path / f"{folder.name}.json"
        result = cli("eval", "--data", folder, "--model", "breast-ultrasound", "--json", report)
        assert result.exit_code == 0, result.stderr
        scores.append(json.loads(report.read_text()))
    assert scores[0]["images"] == scores[1]["images"] >= 2
    assert scores[0]["iou"] == pytest.approx(scores[1]["iou"], abs=1e-9)


def test_the_server_takes_a_dicom_upload(tmp_path):
    pytest.importorskip("uvicorn", reason="the [serve] extra")
    from lvunet_runtime.serve.app import Settings

    from tests.serve.test_api import running

    pixels = colour_pixels()
    data = save(dataset(pixels, "RGB", VL_ENDOSCOPIC))
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    with running(Settings()) as client:
        head, from_dicom = client.ok("POST", "/api/segment?output=mask", data)
        _, from_png = client.ok("POST", "/api/segment?output=mask", buffer.getvalue())
        assert from_dicom == from_png and "x-input-warning" not in {k.lower() for k in head}
        grey = save(dataset(grey_pixels(), "MONOCHROME2"))
        head, _ = client.ok("POST", "/api/segment?output=mask", grey)  # an ultrasound frame
        assert "a grey image sent to a model trained on colour images" in head["x-input-warning"]
        cine = save(_cine(2)[0])
        status, _, body = client.request("POST", "/api/segment", cine)
        assert status == 400 and b"multi-frame" in body


def test_decoding_from_memory_equals_decoding_the_file(tmp_path):
    ds = compressed(dataset(colour_pixels(), "RGB"), J2K_LOSSLESS)
    data = save(ds, tmp_path / "x.dcm")
    assert np.array_equal(decode_image(data)[0], load_image(tmp_path / "x.dcm")[0])
