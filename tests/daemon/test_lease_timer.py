"""The fleet daemon's lease times: renewals due, trust, and when to fence."""

from __future__ import annotations

from swarmd.daemon.lease_timer import LeaseTimer


def test_renewals_come_six_times_a_lease_and_at_every_heartbeat() -> None:
    assert LeaseTimer(30, 2).renew_every == 2
    assert LeaseTimer(6, 2).renew_every == 1


def test_nothing_is_trusted_before_the_first_renewal() -> None:
    timer = LeaseTimer(30, 2)
    assert not timer.fresh(0.0) and timer.overdue(0.0) is None
    assert timer.due(0.0) and not timer.due(1.9) and timer.due(2.0)


def test_unrenewed_past_two_thirds_of_a_lease_is_overdue() -> None:
    timer = LeaseTimer(30, 2)
    timer.renewed(100.0)
    assert timer.fresh(120.0) and timer.overdue(120.0) is None
    assert not timer.fresh(120.5) and timer.overdue(120.5) == 20.5
    timer.renewed(121.0)
    assert timer.fresh(121.0)
