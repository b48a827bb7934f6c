"""Resize the shared datasets to 256x256 into a git-ignored folder small enough to carry to a GPU machine.

    python benchmarks/prepare_data.py --shared ../shared/data --out .data --quality 90
    python benchmarks/prepare_data.py --out .data-384 --size 384 --datasets kvasir-seg cvc-clinicdb --quality 85

Images: cv2.INTER_AREA to 256x256 (what training does anyway), re-encoded as JPEG; masks: INTER_AREA then
> 127, PNG 0/255. Also writes the PraNet split lists for the combined polyp set (Kvasir-SEG + CVC-ClinicDB
ids do not collide, so the combined folder is made of symlinks on the machine that trains), and copies the
per-dataset PraNet lists into ``OUT/splits/``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
from lvunet_runtime.data import find_pairs, read_mask
from lvunet_runtime.image import load_image

SIZE = 256


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shared", type=Path, default=Path("../shared/data"))
    parser.add_argument("--out", type=Path, default=Path(".data"))
    parser.add_argument("--quality", type=int, default=90)
    parser.add_argument(
        "--size", type=int, default=SIZE, help="side of the copies (a multiple of 128)"
    )
    parser.add_argument("--datasets", nargs="+", default=["kvasir-seg", "cvc-clinicdb", "busi"])
    args = parser.parse_args()
    size = args.size
    for name in args.datasets:
        out = args.out / name
        (out / "images").mkdir(parents=True, exist_ok=True)
        (out / "masks").mkdir(parents=True, exist_ok=True)
        for pair in find_pairs(args.shared / name):
            rgb = cv2.resize(load_image(pair.image)[0], (size, size), interpolation=cv2.INTER_AREA)
            mask, _ = read_mask(pair.mask)
            mask = (
                cv2.resize(mask.astype(np.uint8) * 255, (size, size), interpolation=cv2.INTER_AREA)
                > 127
            )
            cv2.imwrite(
                str(out / "images" / f"{pair.id}.jpg"),
                rgb[..., ::-1],
                [cv2.IMWRITE_JPEG_QUALITY, args.quality],
            )
            cv2.imwrite(str(out / "masks" / f"{pair.id}.png"), mask.astype(np.uint8) * 255)
    splits = args.shared / "splits"
    for part in ("train", "test"):
        ids = []
        for name in ("kvasir-seg", "cvc-clinicdb"):
            ids += (splits / f"pranet-{name}-{part}.txt").read_text().split()
        (args.out / f"polyp-pranet-{part}.txt").write_text("\n".join(ids) + "\n")
    (args.out / "splits").mkdir(exist_ok=True)  # the per-dataset lists too (benchmarks/levers.sh)
    for path in splits.glob("pranet-*.txt"):
        (args.out / "splits" / path.name).write_text(path.read_text())


if __name__ == "__main__":
    main()
