"""DICOM in and out (the optional extra ``lvunet-runtime[dicom]``: pydicom, the pylibjpeg decoders,
highdicom): images as ultrasound machines and endoscopy towers export them, masks back as DICOM SEG.

A DICOM file is recognised by its content (``DICM`` after the 128-byte preamble), with or without a
``.dcm`` suffix, so PACS-style folders (``IM0001``, UID names) are read. :func:`read_dicom` gives the
frames as RGB uint8 through the same rules as the image reader: single-frame images (US, VL endoscopic,
secondary capture) are images, multi-frame (cine) ones are run frame by frame like a video. Pixel data
only: burned-in annotations stay as pixels; files that hold no image (structured reports, presentation
states, DICOMDIR) are skipped with a line each. Without the extra, a DICOM input is one line naming it.

Nothing from the DICOM header is written anywhere but into the SEG of that image (the patient, study and
equipment modules a viewer needs to file the SEG with its image); run records and JSON files never hold it.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lvunet_runtime.errors import ImageError, LVUNetRuntimeError, first_line

DICOM_INSTALL = "pip install 'lvunet-runtime[dicom]'"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
PREAMBLE = 128
INTERPRETATIONS = (
    "MONOCHROME1",
    "MONOCHROME2",
    "RGB",
    "YBR_FULL",
    "YBR_FULL_422",
    "PALETTE COLOR",
    "YBR_ICT",
    "YBR_RCT",
)
# Transfer syntaxes the extra decodes (pydicom natively, or its pylibjpeg plugins) and the tests cover.
TRANSFER_SYNTAXES = {
    "1.2.840.10008.1.2": "Implicit VR Little Endian",
    "1.2.840.10008.1.2.1": "Explicit VR Little Endian",
    "1.2.840.10008.1.2.1.99": "Deflated Explicit VR Little Endian",
    "1.2.840.10008.1.2.2": "Explicit VR Big Endian",
    "1.2.840.10008.1.2.4.50": "JPEG Baseline",
    "1.2.840.10008.1.2.4.51": "JPEG Extended",
    "1.2.840.10008.1.2.4.57": "JPEG Lossless",
    "1.2.840.10008.1.2.4.70": "JPEG Lossless SV1",
    "1.2.840.10008.1.2.4.80": "JPEG-LS Lossless",
    "1.2.840.10008.1.2.4.81": "JPEG-LS Near-Lossless",
    "1.2.840.10008.1.2.4.90": "JPEG 2000 Lossless",
    "1.2.840.10008.1.2.4.91": "JPEG 2000",
    "1.2.840.10008.1.2.5": "RLE Lossless",
}


class NotAnImage(ImageError):
    """A valid DICOM file that holds no image (a report, a presentation state, a DICOMDIR)."""


@dataclass
class DicomFrames:
    """The frames of one DICOM image as RGB uint8 ``(N, H, W, 3)``, and its frame rate if it is cine."""

    frames: np.ndarray
    fps: float | None


def looks_dicom(data: bytes) -> bool:
    """Whether ``data`` (a file's first 132 bytes or more) is a DICOM file."""
    return data[PREAMBLE : PREAMBLE + 4] == b"DICM"


def is_dicom(path: str | Path) -> bool:
    """Whether the file at ``path`` is DICOM, by its content (never raises: False when unreadable; a
    pipe or device is never opened: it could block)."""
    try:
        if not Path(path).is_file():
            return False
        with open(path, "rb") as handle:
            return looks_dicom(handle.read(PREAMBLE + 4))
    except (OSError, ValueError):
        return False


def _pydicom(name: str):
    try:
        import pydicom
    except ImportError:
        raise ImageError(
            f"{name}: a DICOM file; reading DICOM needs the extra: {DICOM_INSTALL}"
        ) from None
    return pydicom


def check_seg_extra() -> None:
    """Refuse ``--dicom-seg`` before any work when the extra that writes SEG is missing."""
    try:
        import highdicom  # noqa: F401
        import pydicom  # noqa: F401
    except ImportError:
        raise LVUNetRuntimeError(
            f"--dicom-seg writes DICOM Segmentations with the DICOM extra: {DICOM_INSTALL}"
        ) from None


def _open(source: Path | bytes, name: str, *, header_only: bool):
    pydicom = _pydicom(name)
    stream = source if isinstance(source, Path) else io.BytesIO(source)
    try:
        return pydicom.dcmread(stream, stop_before_pixels=header_only)
    except (pydicom.errors.InvalidDicomError, ValueError, EOFError, KeyError, TypeError) as exc:
        raise ImageError(f"{name}: corrupt or truncated DICOM file ({first_line(exc)})") from None
    except OSError as exc:
        if exc.errno is not None and isinstance(source, Path):
            raise
        raise ImageError(f"{name}: corrupt or truncated DICOM file ({first_line(exc)})") from None


def _what(ds) -> str:
    """``US Image Storage`` (the SOP class's name), or its UID."""
    uid = ds.get("SOPClassUID", None) or getattr(
        ds.get("file_meta", None), "MediaStorageSOPClassUID", ""
    )
    return getattr(uid, "name", "") or str(uid) or "object"


def frame_count(path: Path) -> int:
    """Frames of the DICOM image at ``path`` (1 when it is not an image or cannot be read: the reader
    then says why)."""
    try:
        ds = _open(path, str(path), header_only=True)
    except (ImageError, OSError):
        return 1
    try:
        return max(1, int(ds.get("NumberOfFrames", 1) or 1))
    except (TypeError, ValueError):
        return 1


def read_dicom(source: Path | bytes, *, name: str, max_pixels: int) -> DicomFrames:
    """The image of a DICOM file as RGB uint8 frames.

    Raises:
        NotAnImage: a DICOM object without pixel data.
        ImageError: the extra is missing; a corrupt file; an interpretation or transfer syntax that is
            not read (named); more pixels per frame than ``max_pixels``.
    """
    ds = _open(source, name, header_only=False)
    if "PixelData" not in ds:
        raise NotAnImage(f"{name}: DICOM {_what(ds)}, not an image; skipped")
    rows, columns = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    if rows * columns > max_pixels:
        raise ImageError(
            f"{name}: {columns}x{rows} is {rows * columns / 1e6:.0f} megapixels, over the limit of "
            f"{max_pixels / 1e6:.0f}; raise --max-pixels if you trust this file"
        )
    interpretation = str(ds.get("PhotometricInterpretation", ""))
    if interpretation not in INTERPRETATIONS:
        raise ImageError(
            f"{name}: DICOM photometric interpretation {interpretation or 'missing'} is not read "
            f"(read: {', '.join(INTERPRETATIONS)})"
        )
    syntax = str(getattr(ds.get("file_meta", None), "TransferSyntaxUID", "1.2.840.10008.1.2"))
    if syntax not in TRANSFER_SYNTAXES:
        raise ImageError(
            f"{name}: DICOM transfer syntax {_syntax_name(syntax)} is not decoded; supported: "
            f"{', '.join(TRANSFER_SYNTAXES.values())}"
        )
    try:
        array = ds.pixel_array  # pydicom 3 gives YBR as RGB
    except Exception as exc:  # noqa: BLE001 - decoders raise their own types
        raise ImageError(
            f"{name}: corrupt or truncated DICOM pixel data ({TRANSFER_SYNTAXES[syntax]}: "
            f"{first_line(exc, 160)})"
        ) from None
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    return DicomFrames(_rgb_frames(array, ds, frames, interpretation), _fps(ds))


def _syntax_name(uid: str) -> str:
    try:
        from pydicom.uid import UID

        return f"{UID(uid).name} ({uid})" if UID(uid).name != uid else uid
    except (ImportError, ValueError):
        return uid


def _rgb_frames(array: np.ndarray, ds, frames: int, interpretation: str) -> np.ndarray:
    """Any decoded pixel array -> ``(N, H, W, 3)`` uint8 RGB, by the interpretation's rules."""
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    if frames == 1:
        array = array[None]
    if samples == 1 and array.ndim == 3:
        array = array[..., None]
    if interpretation == "PALETTE COLOR":
        from pydicom.pixels import apply_color_lut

        array = apply_color_lut(array[..., 0], ds)
        bits = 16 if array.dtype.itemsize > 1 and array.max(initial=0) > 255 else 8
        return _to_8bit(array, bits)
    bits = int(ds.get("BitsStored", 8) or 8)
    if samples == 1:
        grey = _grey_8bit(array[..., 0], ds, bits)
        if interpretation == "MONOCHROME1":
            grey = 255 - grey  # MONOCHROME1: 0 is white
        return np.repeat(grey[..., None], 3, axis=-1)
    return _to_8bit(array[..., :3], bits)


def _grey_8bit(array: np.ndarray, ds, bits: int) -> np.ndarray:
    """Grey values to 8 bits: the file's own window (VOI LUT or window centre/width) when it has one,
    else the stored bit depth's full range."""
    if bits <= 8 and array.dtype == np.uint8:
        return array
    if "WindowCenter" in ds or "VOILUTSequence" in ds:
        from pydicom.pixels import apply_voi_lut

        windowed = apply_voi_lut(array.astype(np.float64), ds).astype(np.float64)
        low, high = windowed.min(initial=0), windowed.max(initial=0)
        if high > low:
            return np.clip((windowed - low) * (255.0 / (high - low)) + 0.5, 0, 255).astype(np.uint8)
    if int(ds.get("PixelRepresentation", 0) or 0) == 1:  # signed: shift to unsigned
        array = array.astype(np.int64) + (1 << (bits - 1))
    return _to_8bit(array, bits)


def _to_8bit(array: np.ndarray, bits: int) -> np.ndarray:
    if array.dtype == np.uint8 and bits <= 8:
        return np.ascontiguousarray(array)
    top = float((1 << bits) - 1)
    return np.clip(array.astype(np.float64) * (255.0 / top) + 0.5, 0, 255).astype(np.uint8)


def _fps(ds) -> float | None:
    for key in ("RecommendedDisplayFrameRate", "CineRate"):
        value = ds.get(key)
        if value:
            return float(value)
    frame_time = ds.get("FrameTime")  # milliseconds
    return 1000.0 / float(frame_time) if frame_time else None


@dataclass(frozen=True)
class SegSeries:
    """The DICOM series one run's Segmentations belong to (a new one per run), and what made them."""

    uid: str
    model: str  # the model's identity (``polyp sha256:c66e266a81f3``)
    label: str  # what the model segments (the contract's label)
    number: int = 900

    @classmethod
    def new(cls, segmenter) -> SegSeries:
        _pydicom("--dicom-seg")
        from pydicom.uid import generate_uid

        return cls(generate_uid(), segmenter.identity, segmenter.contract.label)


def _segment_codes(label: str):
    from pydicom.sr.codedict import codes

    kind = codes.SCT.PolypOfColon if "polyp" in label.lower() else codes.SCT.Lesion
    return codes.SCT.MorphologicallyAbnormalStructure, kind


def write_seg(source: Path, masks: np.ndarray, path: Path, series: SegSeries) -> None:
    """A binary DICOM Segmentation of ``source`` (one segment; ``masks`` ``(N, H, W)`` bool, one per
    frame) written to ``path``: the source image referenced, its patient, study and equipment-independent
    modules copied so a viewer files it with its image, the model named as the algorithm."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    from lvunet_runtime.version import __version__

    image = _open(source, str(source), header_only=False)
    frames = len(masks)
    cine = frames > 1 and "FrameOfReferenceUID" not in image
    source_class = image.SOPClassUID
    if (
        cine
    ):  # highdicom segments one frame of an image without a frame of reference: a single-frame
        image = image.copy()  # stand-in now, every frame (and the true SOP class) added below
        image.SOPClassUID = SECONDARY_CAPTURE
        for key in ("NumberOfFrames", "FrameTime", "FrameIncrementPointer"):
            if key in image:
                delattr(image, key)
    category, kind = _segment_codes(series.label)
    algorithm = hd.AlgorithmIdentificationSequence(
        name=f"LV-UNet {series.model}"[:64],
        version=__version__,
        family=codes.cid7162.ArtificialIntelligence,
    )
    segment = hd.seg.SegmentDescription(
        segment_number=1,
        segment_label=series.label[:64] or "object",
        segmented_property_category=category,
        segmented_property_type=kind,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algorithm,
    )
    seg = hd.seg.Segmentation(
        source_images=[image],
        pixel_array=(masks[:1] if cine else masks).astype(np.uint8),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[segment],
        series_instance_uid=series.uid,
        series_number=series.number,
        sop_instance_uid=hd.UID(),
        instance_number=int(image.get("InstanceNumber", 1) or 1),
        manufacturer="lvunet-edge",
        manufacturer_model_name=f"LV-UNet {series.label}"[:64],
        software_versions=__version__,
        device_serial_number="not applicable",
        series_description=f"LV-UNet {series.label} (research software, not a medical device)"[:64],
        omit_empty_frames=False,
    )
    if cine:
        _one_frame_per_source_frame(seg, masks, source_class)
    if "ImageOrientationPatient" not in seg and "PatientOrientation" not in seg:
        # Type 2C for images without a frame of reference (ultrasound, endoscopy): the source's, or empty
        seg.PatientOrientation = image.get("PatientOrientation", "")
    seg.save_as(path)


def _one_frame_per_source_frame(seg, masks: np.ndarray, source_class: str) -> None:
    """Turn highdicom's one-frame SEG of a cine image's stand-in into one SEG frame per source frame:
    each frame references its source frame (Referenced Frame Number) of the source's true SOP class and
    is indexed by its temporal position."""
    from copy import deepcopy

    from pydicom.dataset import Dataset
    from pydicom.pixels import pack_bits
    from pydicom.tag import Tag

    template = seg.PerFrameFunctionalGroupsSequence[0]
    items = []
    for number in range(1, len(masks) + 1):
        item = deepcopy(template)
        source = item.DerivationImageSequence[0].SourceImageSequence[0]
        source.ReferencedFrameNumber = number
        source.ReferencedSOPClassUID = source_class
        content = item.FrameContentSequence[0]
        content.TemporalPositionIndex = number
        content.DimensionIndexValues = [1, number]
        items.append(item)
    seg.PerFrameFunctionalGroupsSequence = items
    time = Dataset()
    time.DimensionOrganizationUID = seg.DimensionIndexSequence[0].DimensionOrganizationUID
    time.DimensionIndexPointer = Tag(0x0020, 0x9128)  # Temporal Position Index
    time.FunctionalGroupPointer = Tag(0x0020, 0x9111)  # Frame Content Sequence
    time.DimensionDescriptionLabel = "Temporal Position Index"
    seg.DimensionIndexSequence.append(time)
    for series in seg.ReferencedSeriesSequence:
        for instance in series.ReferencedInstanceSequence:
            instance.ReferencedSOPClassUID = source_class
    seg.NumberOfFrames = len(masks)
    packed = pack_bits(masks.astype(np.uint8).ravel())
    seg.PixelData = packed + (b"\0" if len(packed) % 2 else b"")
