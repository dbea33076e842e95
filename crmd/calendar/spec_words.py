"""The words of a schedule: days of the month and of the week, shifts, festivals and cron.

What a person writes (monday, 周一, last working day, 春节, '30 9 * * 1-5') read into the
values the schedule classes of `crmd.calendar.schedules` take; a wrong one is a ValueError
that says what to write instead.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time
from typing import Literal, get_args

from croniter import croniter

DayWord = Literal["last", "first_working_day", "last_working_day"]
DaySpec = int | DayWord
Shift = Literal["none", "previous_working_day", "next_working_day"]
ALL_MONTHS: tuple[int, ...] = tuple(range(1, 13))
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")

_DAY_HELP = (
    "write a day of the month 1..31 (past the month's end means its last day), 'last', "
    "'first working day' or 'last working day', or a list of them, like [15, 30]"
)
_WEEKDAY_HELP = "write monday..sunday, mon..sun, 周一..周日 or 星期一..星期日, or a list of them"
_WEEKDAY_WORDS: dict[str, int] = {}
for _number, _name in enumerate(WEEKDAYS):
    _cn = "一二三四五六日"[_number]
    for _word in (_name.lower(), _name[:3].lower(), f"周{_cn}", f"星期{_cn}"):
        _WEEKDAY_WORDS[_word] = _number
_WEEKDAY_WORDS.update({"tues": 1, "thur": 3, "thurs": 3, "周天": 6, "星期天": 6})
_DAY_WORDS: dict[str, DayWord] = {
    **dict.fromkeys(("last", "last day", "最后一天", "月末"), "last"),
    **dict.fromkeys(("first working day", "第一个工作日", "首个工作日"), "first_working_day"),
    **dict.fromkeys(("last working day", "最后一个工作日"), "last_working_day"),
}
_FESTIVAL_WORDS: dict[str, str] = {
    **dict.fromkeys(("new year", "new year's day", "元旦"), "new_year"),
    **dict.fromkeys(
        ("spring festival", "chinese new year", "lunar new year", "春节"), "spring_festival"
    ),
    **dict.fromkeys(("qingming", "tomb-sweeping day", "清明", "清明节"), "qingming"),
    **dict.fromkeys(("labour day", "labor day", "劳动节", "五一"), "labour_day"),
    **dict.fromkeys(("dragon boat", "dragon boat festival", "端午", "端午节"), "dragon_boat"),
    **dict.fromkeys(("mid-autumn", "mid-autumn festival", "中秋", "中秋节"), "mid_autumn"),
    **dict.fromkeys(("national day", "国庆", "国庆节"), "national_day"),
}
_FESTIVAL_HELP = (
    "write one of new year (元旦), spring festival (春节), qingming (清明), labour day (劳动节), "
    "dragon boat (端午), mid-autumn (中秋) or national day (国庆)"
)
_SHIFT_WORDS: dict[str, Shift] = {s.replace("_", " "): s for s in get_args(Shift)}


def _words(text: str) -> str:
    return " ".join(text.replace("_", " ").casefold().split())


def parse_weekdays(value: object) -> tuple[int, ...]:
    """Read `monday`, `mon`, `周一`, `星期一` or a list of them; 0 is Monday."""
    items = value if isinstance(value, list) and value else [value]
    found = {_WEEKDAY_WORDS.get(_words(i)) if isinstance(i, str) else None: i for i in items}
    if None in found:
        raise ValueError(f"{found[None]!r} is not a day of the week: {_WEEKDAY_HELP}")
    return tuple(sorted(w for w in found if w is not None))


def parse_day_spec(value: object) -> tuple[DaySpec, ...]:
    """Read a day of the month: 10, "10", last, "first working day", ... or a list of them."""
    found: list[DaySpec] = []
    for item in value if isinstance(value, list) and value else [value]:
        spec: DaySpec | None = None
        if isinstance(item, int) and not isinstance(item, bool):
            spec = item if 1 <= item <= 31 else None
        elif isinstance(item, str):
            word = _words(item)
            spec = int(word) if word.isdecimal() and 1 <= int(word) <= 31 else _DAY_WORDS.get(word)
        if spec is None:
            raise ValueError(f"{item!r} is not a day of the month: {_DAY_HELP}")
        found.append(spec)
    return tuple(found)


def parse_shift(value: object) -> Shift:
    """Read `previous working day` or `next working day` (underscores work too)."""
    shift = _SHIFT_WORDS.get(_words(value)) if isinstance(value, str) else None
    if shift is None:
        raise ValueError(
            f"{value!r} is not a shift: write 'previous working day' or 'next working day'"
        )
    return shift


def parse_festival(value: object) -> str:
    """Read a statutory holiday's name, English or Chinese: spring festival, 春节, ..."""
    festival = _FESTIVAL_WORDS.get(_words(value)) if isinstance(value, str) else None
    if festival is None:
        raise ValueError(f"{value!r} is not one of China's statutory holidays: {_FESTIVAL_HELP}")
    return festival


def parse_days(value: object) -> bool:
    """Read daily's `days`: True for working days only."""
    word = _words(value) if isinstance(value, str) else None
    if word not in ("all", "every day", "working", "working days", "工作日"):
        raise ValueError(
            f"{value!r} is not a choice of days: write days: working (China's working days), "
            f"or leave days out for every day"
        )
    return word not in ("all", "every day")


# -- cron ---------------------------------------------------------------------------------

_CRON_ALIASES = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
_CRON_HELP = (
    "write 5 fields (minute hour day-of-month month day-of-week), like '30 9 * * 1-5', "
    "or one of " + ", ".join(_CRON_ALIASES)
)
_RANDOM_ITEM = re.compile(r"^[hr](\(|/|$)", re.IGNORECASE)


def parse_cron(expr: str) -> str:
    """Check a 5-field cron expression (or @daily and friends); return it normalised."""
    if not isinstance(expr, str):
        raise ValueError(f"{expr!r} is not a cron expression: {_CRON_HELP}")
    fields = expr.split()
    text = " ".join(fields)
    if len(fields) == 1 and fields[0].lower() in _CRON_ALIASES:
        text = fields[0].lower()
    elif len(fields) != 5:
        raise ValueError(f"{expr!r} is not a cron expression: {_CRON_HELP}")
    # croniter's R and H fields pick a random or hashed value per iterator: a fire time
    # must come out the same every time it is computed, so they are refused.
    if any(_RANDOM_ITEM.match(item) for field in fields for item in field.split(",")):
        raise ValueError(
            f"{expr!r} is not a cron expression: random (R) and hashed (H) fields are not "
            f"supported; {_CRON_HELP}"
        )
    try:
        croniter(text, datetime.combine(date(2001, 1, 1), time())).get_next(datetime)
    except (ValueError, KeyError, TypeError) as error:
        # CroniterBadDateError (a ValueError) means it never fires, such as '0 0 30 2 *'.
        reason = str(error) or type(error).__name__
        if "failed to find" in reason:
            reason = "it matches no date"
        raise ValueError(f"{expr!r} is not a cron expression: {reason}; {_CRON_HELP}") from None
    return text
