"""The overlapped pipeline: results in input order whatever the threads do, per-item faults skip only
their item, batches as asked, and a live source hands back each result before taking the next."""

import threading
import time

import numpy as np
import pytest
from lvunet_runtime.errors import ImageError
from lvunet_runtime.pipeline import run_pipeline
from lvunet_runtime.segmenter import Prepared


class FakeSegmenter:
    """Records the batch sizes it is given; the 'model output' of an item is its number."""

    def __init__(self) -> None:
        self.batches: list[int] = []

    def run_prepared(self, prepared):
        self.batches.append(len(prepared))
        return np.stack([p.resized[..., 0].astype(np.float32) for p in prepared])


def _load(number: int) -> Prepared:
    if number == 3:
        raise ImageError("item 3 is unreadable")
    time.sleep(0.002 * (number % 4))  # loads finish out of order
    return Prepared(np.full((2, 2, 3), number, np.uint8), (2, 2))


def _finish(number, prepared, output):
    time.sleep(0.002 * ((7 - number) % 3))  # finishing out of order too
    return int(output[0, 0]), threading.current_thread().name


@pytest.mark.parametrize(("workers", "batch_size"), [(1, 1), (3, 1), (2, 4)])
def test_results_in_input_order_faults_skip_only_their_item(workers, batch_size):
    segmenter = FakeSegmenter()
    outcomes = list(
        run_pipeline(segmenter, range(10), _load, _finish, workers=workers, batch_size=batch_size)
    )
    assert [o.item for o in outcomes] == list(range(10))
    assert [o.result[0] for o in outcomes if o.error is None] == [0, 1, 2, 4, 5, 6, 7, 8, 9]
    (failed,) = [o for o in outcomes if o.error is not None]
    assert failed.item == 3 and "unreadable" in str(failed.error)
    assert max(segmenter.batches) == batch_size and sum(segmenter.batches) == 9
    assert all(o.result[1] != threading.main_thread().name for o in outcomes if o.error is None)


def test_live_source_gets_each_result_before_the_next_item_is_taken():
    taken, seen = [], []

    def items():
        for number in range(5):
            taken.append(number)
            yield number

    for outcome in run_pipeline(FakeSegmenter(), items(), _load, _finish, workers=2, live=True):
        seen.append(outcome.item)
        assert taken[-1] <= outcome.item + 1  # at most the next frame was read ahead
    assert seen == list(range(5))
