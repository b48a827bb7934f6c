"""A live source faster than the model: frames are dropped, not queued, so latency stays bounded."""

import time

import cv2
import numpy as np
from lvunet_runtime import Segmenter
from lvunet_runtime.infer import run_live

from tests.helpers import BUSI_IMAGE


class PacedCamera:
    """A stand-in for cv2.VideoCapture that delivers ``count`` frames at ``fps`` in real time."""

    def __init__(self, fps: float, count: int) -> None:
        self.interval, self.left = 1.0 / fps, count
        self.frame = cv2.resize(cv2.imread(str(BUSI_IMAGE)), (640, 480))
        self.next = time.perf_counter()

    def read(self):
        if self.left == 0:
            return False, None
        self.left -= 1
        self.next += self.interval
        time.sleep(max(0.0, self.next - time.perf_counter()))
        return True, self.frame


def test_live_source_drops_frames_and_keeps_latency_bounded():
    segmenter = Segmenter("polyp", threads=1)
    count, fps = 150, 500.0  # far faster than a 2-core machine segments 640x480 frames
    stats = run_live(segmenter, PacedCamera(fps, count), show=False, max_frames=None)
    assert stats.frames + stats.dropped == count
    assert stats.dropped > 0 and stats.frames > 5
    # with every frame queued, the last would wait for all before it (~count x per-frame time)
    assert np.percentile(stats.latencies_ms, 90) < 150, stats.line()
    assert "dropped to stay live" in stats.line() and "p90" in stats.line()
