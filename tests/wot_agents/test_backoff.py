"""``Backoff``: the delays of the retry loops (informer, leader election, channel operator)."""

from __future__ import annotations

import pytest

from wot_agents._backoff import Backoff


def test_delays_double_up_to_the_maximum_and_start_over_after_a_reset() -> None:
    backoff = Backoff(0.1, 1.0)
    assert [backoff.next() for _ in range(6)] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])
    backoff.reset()
    assert backoff.next() == pytest.approx(0.1)


def test_without_a_maximum_the_delay_is_a_steady_cadence() -> None:
    backoff = Backoff(5.0)
    assert {backoff.next() for _ in range(5)} == {5.0}


def test_jitter_spreads_each_delay_around_its_base() -> None:
    backoff = Backoff(1.0, 1.0, jitter=0.5)
    delays = [backoff.next() for _ in range(2000)]
    assert all(0.5 <= delay <= 1.5 for delay in delays)
    assert min(delays) < 0.6 and max(delays) > 1.4  # spread over the range, not one value


@pytest.mark.parametrize(
    ("initial", "maximum", "jitter"), [(-1.0, None, 0.0), (2.0, 1.0, 0.0), (1.0, None, 1.5)]
)
def test_nonsense_is_refused(initial: float, maximum: float | None, jitter: float) -> None:
    with pytest.raises(ValueError):
        Backoff(initial, maximum, jitter=jitter)
