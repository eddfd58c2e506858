"""Cron schedules as the CronJob controller reads them (robfig/cron's standard parser, which
upstream uses): five fields (minute hour day-of-month month day-of-week) with `*`, `?`, ranges,
steps, lists and month/day names; the @yearly/@annually/@monthly/@weekly/@daily/@midnight/@hourly
descriptors; `@every <duration>`; and a leading `TZ=`/`CRON_TZ=` zone.

Whether a spec parses, and the error text when it does not, comes from the API's validation
(`cron_schedule_error`), so the two can never disagree. Day-of-month and day-of-week combine as
robfig's do: if either field starts with `*` or `?` both must match, otherwise either may.
"""
from __future__ import annotations

import datetime
import zoneinfo
from dataclasses import dataclass

from ..api import durations
from ..api.validation import _CRON_FIELDS, cron_schedule_error

DESCRIPTORS = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
               "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *"}
SEARCH_YEARS = 5  # robfig gives up (zero time) when nothing matches within five years
UTC = datetime.timezone.utc


class ScheduleError(ValueError):
    pass


def _field(text: str, lo: int, hi: int, names: dict | None) -> tuple[frozenset[int], bool]:
    """The values a field allows and whether it counts as `*` (robfig's star bit)."""
    values: set[int] = set()
    star = False
    for expr in text.split(","):
        range_part, _, step_part = expr.partition("/")
        bounds = range_part.split("-")
        step = int(step_part) if step_part else 1
        if bounds[0] in ("*", "?"):
            start, end = lo, hi
            star = star or step == 1
        else:
            def num(s: str) -> int:
                return names[s.lower()] if names and s.lower() in names else int(s)
            start = num(bounds[0])
            end = num(bounds[1]) if len(bounds) == 2 else (hi if step_part else start)
        values.update(range(start, end + 1, step))
    return frozenset(values), star


@dataclass(frozen=True)
class Schedule:
    minutes: frozenset[int] = frozenset()
    hours: frozenset[int] = frozenset()
    dom: frozenset[int] = frozenset()
    months: frozenset[int] = frozenset()
    dow: frozenset[int] = frozenset()
    dom_star: bool = False
    dow_star: bool = False
    every: float | None = None               # @every: a constant delay in whole seconds
    zone: datetime.tzinfo | None = None      # from TZ=; else the caller's zone

    def _day_matches(self, d: datetime.datetime) -> bool:
        dom_ok = d.day in self.dom
        dow_ok = (d.isoweekday() % 7) in self.dow
        if self.dom_star or self.dow_star:
            return dom_ok and dow_ok
        return dom_ok or dow_ok

    def next(self, t: datetime.datetime, zone: datetime.tzinfo | None = None) -> datetime.datetime | None:
        """The first activation strictly after `t` (an aware datetime), or None if none within five
        years. Fields are matched in the schedule's zone: TZ=, else `zone`, else `t`'s own."""
        if self.every is not None:
            return t.replace(microsecond=0) + datetime.timedelta(seconds=self.every)
        tz = self.zone or zone or t.tzinfo or UTC
        local = t.astimezone(tz).replace(tzinfo=None, second=0, microsecond=0) + datetime.timedelta(minutes=1)
        limit = local.year + SEARCH_YEARS
        while local.year <= limit:
            if local.month not in self.months:
                year, month = (local.year + 1, 1) if local.month == 12 else (local.year, local.month + 1)
                local = datetime.datetime(year, month, 1)
                continue
            if not self._day_matches(local):
                local = datetime.datetime(local.year, local.month, local.day) + datetime.timedelta(days=1)
                continue
            if local.hour not in self.hours:
                local = local.replace(minute=0) + datetime.timedelta(hours=1)
                continue
            if local.minute not in self.minutes:
                local += datetime.timedelta(minutes=1)
                continue
            return local.replace(tzinfo=tz).astimezone(t.tzinfo or UTC)
        return None


def parse(spec: str) -> Schedule:
    """Parse a schedule; ScheduleError carries robfig's message for a bad one."""
    problem = cron_schedule_error(spec)
    if problem:
        raise ScheduleError(problem)
    zone = None
    if spec.startswith(("TZ=", "CRON_TZ=")):
        head, _, spec = spec.partition(" ")
        zone = zoneinfo.ZoneInfo(head.split("=", 1)[1])
        spec = spec.strip()
    if spec.startswith("@every "):
        seconds = durations.parse(spec[len("@every "):].strip())
        return Schedule(every=max(1.0, float(int(seconds))), zone=zone)
    spec = DESCRIPTORS.get(spec, spec)
    fields = [_field(text, lo, hi, names) for text, (_, lo, hi, names) in zip(spec.split(), _CRON_FIELDS)]
    (minutes, _), (hours, _), (dom, dom_star), (months, _), (dow, dow_star) = fields
    return Schedule(minutes, hours, dom, months, dow, dom_star, dow_star, zone=zone)


def in_zone(spec: str, time_zone: str | None) -> str:
    """The schedule with a CronJob's spec.timeZone folded in, as upstream's formatSchedule."""
    if "TZ" in spec or not time_zone:
        return spec
    return f"TZ={time_zone} {spec}"
