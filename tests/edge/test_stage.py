"""OutputStage: items handled in order on their own thread; a failing handler is reported, not lost."""

from __future__ import annotations

import threading
import time

import pytest

from edge.errors import ConfigError, EdgecamError
from edge.stage import OutputStage


def test_items_are_handled_in_order_on_another_thread_and_close_drains():
    seen, threads = [], set()

    def handle(item):
        time.sleep(0.001)
        threads.add(threading.current_thread().name)
        seen.append(item)

    with OutputStage(handle, queue_size=2, name="out") as stage:
        for i in range(50):
            stage.put(i)
    assert seen == list(range(50)) and stage.handled == 50
    assert threads == {"out"}


def test_a_failing_handler_ends_the_stage_and_the_producer_hears_of_it():
    def handle(item):
        if item == 3:
            raise ValueError("sink is full")

    stage = OutputStage(handle, queue_size=1).start()
    with pytest.raises(EdgecamError, match="output stage stopped: ValueError: sink is full"):
        for i in range(1000):  # the producer is told within a few puts, never left blocked
            stage.put(i)
    with pytest.raises(EdgecamError, match="sink is full"):
        stage.close()
    assert stage.handled == 3


def test_put_before_start_and_after_close_are_refused():
    stage = OutputStage(lambda item: None)
    with pytest.raises(EdgecamError, match="not started"):
        stage.put(1)
    stage.start()
    stage.close()
    stage.close()  # twice is fine
    with pytest.raises(EdgecamError, match="closed"):
        stage.put(2)


@pytest.mark.parametrize("kwargs", [{"queue_size": 0}, {"queue_size": True}])
def test_bad_options_are_refused(kwargs):
    with pytest.raises(ConfigError):
        OutputStage(lambda item: None, **kwargs)
