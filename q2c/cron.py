"""Cron schedules (alerting's digests and maintenance windows, reconciliations), read with
crontab's meaning.

APScheduler 3.x's `CronTrigger.from_crontab` numbers weekdays from Monday = 0 (its own
documented historical mistake), so `0 7 * * 1-5` would run Tuesday to Saturday. Here the
weekday field is read as crontab reads it — 0 and 7 are Sunday, names allowed — and handed
to APScheduler as day names, which both agree on.
"""

from __future__ import annotations

import re
from datetime import datetime, tzinfo

from apscheduler.triggers.cron import CronTrigger

_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")  # crontab's 0 to 6
_ITEM = re.compile(r"^(\*|[a-z0-9]+)(?:-([a-z0-9]+))?(?:/(\d+))?$")


def _day(token: str) -> int:
    if token.isdigit() and int(token) <= 7:
        return int(token) % 7
    if token[:3] in _DAYS and len(token) == 3:
        return _DAYS.index(token)
    raise ValueError(f"{token!r} is not a weekday (0-7 or sun-sat)")


def _weekdays(field: str) -> str:
    """Crontab's day-of-week field as APScheduler day names ('*' when it is every day)."""
    days: set[int] = set()
    for item in field.lower().split(","):
        match = _ITEM.match(item)
        if not match:
            raise ValueError(f"{item!r} is not a weekday expression")
        start, end, step = match.groups()
        if start == "*":
            first, last = 0, 6
        else:
            first = _day(start)
            # `5-7` is Friday to Sunday: 7 closes a range as Sunday after Saturday.
            last = (7 if end == "7" else _day(end)) if end else first
        if end is None and step and start != "*":
            last = 6  # `1/2`: from Monday on, every second day
        if last < first:
            raise ValueError(f"{item!r} is a range that runs backwards")
        days.update(day % 7 for day in range(first, last + 1, int(step or 1)))
    if len(days) == 7:
        return "*"
    return ",".join(_DAYS[day] for day in sorted(days))


def cron_trigger(expression: str, timezone: tzinfo) -> CronTrigger:
    """The trigger of a five-field crontab `expression` in `timezone`; ValueError saying
    what is wrong when it is not one."""
    fields = expression.split()
    if len(fields) != 5:
        raise ValueError(
            f"has {len(fields)} fields; a cron schedule has 5 (minute hour day month weekday)"
        )
    minute, hour, day, month, weekday = fields
    return CronTrigger(
        minute=minute,
        hour=hour,
        day=day,
        month=month,
        day_of_week=_weekdays(weekday),
        timezone=timezone,
    )


def next_run(expression: str, timezone: tzinfo, after: datetime) -> datetime:
    """When `expression` next fires at or after `after` (an aware datetime)."""
    fire: datetime | None = cron_trigger(expression, timezone).get_next_fire_time(None, after)
    assert fire is not None  # a valid five-field schedule always fires again
    return fire
