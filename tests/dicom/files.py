"""DICOM files made in the tests (no file is downloaded): a real image's pixels in each photometric
interpretation and transfer syntax the reader supports, with the modules a modality would write."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from tests.helpers import BUSI_IMAGE, KVASIR_IMAGE

US_IMAGE = "1.2.840.10008.5.1.4.1.1.6.1"  # Ultrasound Image Storage
US_MULTIFRAME = "1.2.840.10008.5.1.4.1.1.3.1"  # Ultrasound Multi-frame Image Storage
VL_ENDOSCOPIC = "1.2.840.10008.5.1.4.1.1.77.1.1"  # VL Endoscopic Image Storage
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"


def colour_pixels() -> np.ndarray:
    return np.asarray(Image.open(KVASIR_IMAGE).convert("RGB"))


def grey_pixels() -> np.ndarray:
    return np.asarray(Image.open(BUSI_IMAGE).convert("L"))


def dataset(pixels: np.ndarray, interpretation: str, sop_class: str = US_IMAGE, frames: int = 1):
    """A DICOM dataset holding ``pixels`` (H, W[, 3] or N, H, W[, 3] when ``frames`` > 1)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, meta.MediaStorageSOPInstanceUID
    ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "Doe^Jane", "P-4711", "", "F"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.StudyID, ds.SeriesNumber, ds.InstanceNumber, ds.AccessionNumber = "1", 1, 1, ""
    ds.StudyDate, ds.StudyTime, ds.ReferringPhysicianName = "20261201", "101500", ""
    ds.Modality = (
        "ES" if sop_class == VL_ENDOSCOPIC else ("OT" if sop_class == SECONDARY_CAPTURE else "US")
    )
    ds.Manufacturer = "Test Modality"
    bits = 16 if pixels.dtype == np.uint16 else 8
    ds.set_pixel_data(pixels, interpretation, bits)
    if frames > 1:
        ds.FrameTime = 40.0
    return ds


def save(ds, path: Path | None = None) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    data = buffer.getvalue()
    if path is not None:
        path.write_bytes(data)
    return data


def compressed(ds, syntax: str):
    """``ds`` with its pixel data in ``syntax``: pydicom's encoders where it has one, otherwise frames
    encoded by Pillow (JPEG Baseline) or imagecodecs (JPEG Lossless SV1) and encapsulated."""
    from pydicom.encaps import encapsulate

    if syntax == "1.2.840.10008.1.2.1":  # Explicit VR Little Endian: as made
        return ds
    if syntax in ("1.2.840.10008.1.2.5", "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.90"):
        ds.compress(syntax, generate_instance_uid=False)
        return ds
    pixels = ds.pixel_array
    frames = pixels[None] if int(ds.get("NumberOfFrames", 1) or 1) == 1 else pixels
    if syntax == "1.2.840.10008.1.2.4.50":
        encoded = []
        for frame in frames:
            buffer = io.BytesIO()
            Image.fromarray(frame).save(buffer, "JPEG", quality=95)
            encoded.append(buffer.getvalue())
        if frames.ndim == 4:
            ds.PhotometricInterpretation = "YBR_FULL_422"
    elif syntax == "1.2.840.10008.1.2.4.70":
        import imagecodecs

        encoded = [imagecodecs.ljpeg_encode(frame) for frame in frames]
    else:
        raise ValueError(syntax)
    ds.PixelData = encapsulate(encoded)
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    ds.file_meta.TransferSyntaxUID = syntax
    return ds
