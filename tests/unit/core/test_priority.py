"""A job's helper threads run nicer than its main thread, by a fixed step, whichever thread made them."""

from __future__ import annotations

import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from openhcs_rules.core.priority import HELPER_NICE_STEP, NICEST, lower_helper_priority

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a nice value per thread is Linux's")


def _nice_of_this_thread() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


def test_a_helper_pool_runs_nicer_than_the_main_thread_and_leaves_it_alone() -> None:
    main = os.getpriority(os.PRIO_PROCESS, os.getpid())
    with ThreadPoolExecutor(max_workers=1, initializer=lower_helper_priority) as helpers:
        assert helpers.submit(_nice_of_this_thread).result() == min(NICEST, main + HELPER_NICE_STEP)
    assert os.getpriority(os.PRIO_PROCESS, os.getpid()) == main


def test_a_helper_made_by_a_helper_is_not_lowered_twice() -> None:
    main = os.getpriority(os.PRIO_PROCESS, os.getpid())

    def inner() -> int:
        with ThreadPoolExecutor(max_workers=1, initializer=lower_helper_priority) as nested:
            return nested.submit(_nice_of_this_thread).result()

    with ThreadPoolExecutor(max_workers=1, initializer=lower_helper_priority) as helpers:
        assert helpers.submit(inner).result() == min(NICEST, main + HELPER_NICE_STEP)


def test_a_thread_already_at_the_helper_priority_is_not_changed() -> None:
    def twice() -> tuple[bool, bool]:
        return lower_helper_priority(), lower_helper_priority()

    with ThreadPoolExecutor(max_workers=1) as plain:
        first, second = plain.submit(twice).result()
    assert second is False and (first is True or os.getpriority(os.PRIO_PROCESS, os.getpid()) >= NICEST)
