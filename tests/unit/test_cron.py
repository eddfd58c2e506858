"""Cron schedule parsing and next-activation times, as robfig/cron's standard parser computes them."""
from __future__ import annotations

import datetime

import pytest

from ketch.controllers import cron
from ketch.controllers.cronjob import most_recent_schedule_time

UTC = datetime.timezone.utc


def t(*args, tz=UTC):
    return datetime.datetime(*args, tzinfo=tz)


@pytest.mark.parametrize("spec,after,expected", [
    ("* * * * *", t(2026, 1, 1, 10, 0, 0), t(2026, 1, 1, 10, 1)),
    ("* * * * *", t(2026, 1, 1, 10, 0, 59), t(2026, 1, 1, 10, 1)),
    ("*/1 * * * *", t(2026, 1, 1, 23, 59, 30), t(2026, 1, 2, 0, 0)),
    ("*/15 * * * *", t(2026, 1, 1, 10, 16), t(2026, 1, 1, 10, 30)),
    ("5/15 * * * *", t(2026, 1, 1, 10, 51), t(2026, 1, 1, 11, 5)),
    ("0 9-17/4 * * *", t(2026, 1, 1, 13, 0), t(2026, 1, 1, 17, 0)),
    ("0 0 1,15 * *", t(2026, 1, 2), t(2026, 1, 15)),
    ("30 6 * JAN-mar *", t(2026, 3, 31, 7), t(2027, 1, 1, 6, 30)),
    ("0 12 * * MON-FRI", t(2026, 12, 4, 12, 0), t(2026, 12, 7, 12, 0)),  # Fri -> Mon
    ("15 10 * * 6", t(2026, 12, 1, 0, 0), t(2026, 12, 5, 10, 15)),      # the book's: Saturdays 10:15
    ("0 0 13 * 5", t(2026, 1, 1), t(2026, 1, 2)),   # dom and dow restricted: either matches (a Friday)
    ("0 0 */2 * 1", t(2026, 1, 1), t(2026, 1, 3)),  # */2 is not a star: either matches
    ("0 0 * * 5", t(2026, 1, 1), t(2026, 1, 2)),    # dom is *: dow must match
    ("0 0 29 2 *", t(2026, 1, 1), t(2028, 2, 29)),
    ("@hourly", t(2026, 1, 1, 10, 30), t(2026, 1, 1, 11, 0)),
    ("@daily", t(2026, 1, 1, 10, 30), t(2026, 1, 2)),
    ("@midnight", t(2026, 1, 1, 10, 30), t(2026, 1, 2)),
    ("@weekly", t(2026, 12, 1), t(2026, 12, 6)),  # Sunday
    ("@monthly", t(2026, 12, 1), t(2027, 1, 1)),
    ("@yearly", t(2026, 12, 1), t(2027, 1, 1)),
    ("@annually", t(2026, 12, 1), t(2027, 1, 1)),
    ("@every 90s", t(2026, 1, 1, 10, 0, 0, 500000), t(2026, 1, 1, 10, 1, 30)),
])
def test_next(spec, after, expected):
    assert cron.parse(spec).next(after) == expected


def test_time_zones():
    ny = "America/New_York"
    sched = cron.parse(cron.in_zone("0 9 * * *", ny))
    # 09:00 in New York is 14:00 UTC in winter, 13:00 UTC in summer.
    assert sched.next(t(2026, 1, 10, 0, 0)) == t(2026, 1, 10, 14, 0)
    assert sched.next(t(2026, 7, 10, 0, 0)) == t(2026, 7, 10, 13, 0)
    assert cron.parse("CRON_TZ=Asia/Tokyo 0 0 * * *").next(t(2026, 1, 1, 12)) == t(2026, 1, 1, 15)
    assert cron.in_zone("TZ=UTC * * * * *", ny) == "TZ=UTC * * * * *"


def test_impossible_schedule_finds_nothing():
    assert cron.parse("0 0 31 2 *").next(t(2026, 1, 1)) is None


@pytest.mark.parametrize("spec,message", [
    ("* * * *", "expected exactly 5 fields, found 4: [* * * *]"),
    ("61 * * * *", "end of range (61) above maximum (59): 61"),
    ("@fortnightly", "unrecognized descriptor: @fortnightly"),
    ("*/0 * * * *", "step of range should be a positive number: */0"),
])
def test_errors_are_robfigs(spec, message):
    with pytest.raises(cron.ScheduleError, match=message.replace("[", r"\[").replace("]", r"\]")
                       .replace("(", r"\(").replace(")", r"\)").replace("*", r"\*")):
        cron.parse(spec)


def cronjob(created, last=None, deadline=None):
    cj = {"metadata": {"creationTimestamp": created}, "spec": {}, "status": {}}
    if last:
        cj["status"]["lastScheduleTime"] = last
    if deadline is not None:
        cj["spec"]["startingDeadlineSeconds"] = deadline
    return cj


def test_most_recent_schedule_time_and_missed_counts():
    every_minute = cron.parse("* * * * *")
    cj = cronjob("2026-01-01T10:00:30Z")
    # Nothing due yet.
    assert most_recent_schedule_time(cj, t(2026, 1, 1, 10, 0, 50), every_minute, True)[1:] == (None, 0)
    # One due (upstream counts it as none missed).
    assert most_recent_schedule_time(cj, t(2026, 1, 1, 10, 1, 5), every_minute, True)[1:] == (t(2026, 1, 1, 10, 1), 0)
    # Several missed: the latest is returned.
    _, latest, missed = most_recent_schedule_time(cj, t(2026, 1, 1, 10, 5, 5), every_minute, True)
    assert latest == t(2026, 1, 1, 10, 5) and missed == 5
    # Over 100 missed.
    _, latest, missed = most_recent_schedule_time(cj, t(2026, 1, 1, 13, 0, 5), every_minute, True)
    assert latest == t(2026, 1, 1, 13, 0) and missed > 100
    # startingDeadlineSeconds bounds how far back is looked.
    _, latest, missed = most_recent_schedule_time(cronjob("2026-01-01T10:00:30Z", deadline=30),
                                                  t(2026, 1, 1, 13, 0, 5), every_minute, True)
    assert latest == t(2026, 1, 1, 13, 0) and missed == 0
    # lastScheduleTime is where counting resumes.
    _, latest, missed = most_recent_schedule_time(cronjob("2026-01-01T00:00:00Z", "2026-01-01T12:58:00Z"),
                                                  t(2026, 1, 1, 13, 0, 5), every_minute, True)
    assert latest == t(2026, 1, 1, 13, 0) and missed == 2
