"""A live source faster than the model: frames are dropped, not queued, so latency stays bounded."""

import time

import cv2
import numpy as np
from lvunet_runtime import Segmenter
from lvunet_runtime.live import run_live

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
    # 1.5 s of frames every 5 ms: far faster than a 2-core machine segments 640x480 frames, and long
    # enough for several model runs even on a loaded machine (CI ran 5 in 0.3 s under load)
    count, fps = 300, 200.0
    stats = run_live(segmenter, PacedCamera(fps, count), show=False, max_frames=None)
    assert stats.frames + stats.dropped == count
    assert stats.dropped > 0 and stats.frames > 5
    # with every frame queued, latency would grow through the run (the k-th frame waits for all before
    # it); dropped frames keep it flat: the last third no slower than twice the first third
    third = len(stats.latencies_ms) // 3
    first, last = np.mean(stats.latencies_ms[:third]), np.mean(stats.latencies_ms[-third:])
    assert last < 2 * first + 20, stats.line()
    assert "dropped to stay live" in stats.line() and "p90" in stats.line()
