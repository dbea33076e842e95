"""A small demo dealership, made up relative to today, so a newcomer sees crmd work at once."""

from __future__ import annotations

import itertools
import random
from datetime import date, datetime, time, timedelta

from crmd.engine.evaluation import Engine
from crmd.errors import CrmdError
from crmd.intake.records import NewEvent, record_events, upsert_customers, upsert_vehicles
from crmd.site import Site
from crmd.store import queries as q
from crmd.store.database import Store, Unit

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = ["伟", "芳", "娜", "敏", "静", "强", "磊", "军", "洋", "勇", "艳", "杰", "娟", "涛", "明"]
MODELS = ["朗逸", "速腾", "帕萨特", "途观L", "迈腾", "宝来"]


# A store of about 1,500 customers has some 20 service visits a day (DOMAIN.md) and sells a
# few cars a day; a smaller demo keeps a minimum so there is always something to see.
SERVICE_VISITS_PER_CUSTOMER_DAY = 20 / 1500
DELIVERIES_PER_CUSTOMER_DAY = 4 / 1500


def load_demo(
    store: Store, site: Site, engine: Engine, now: datetime, *, days: int = 30, customers: int = 40
) -> int:
    """Fill an empty store with `customers` and `days` of made-up history; returns the number
    of events.

    Every rule is started `days` ago, as if the site had run crmd for that long, so the
    first tick catches up on the history (its fires are marked late) and later ticks
    keep finding new work as the made-up deliveries reach their callback days.
    """
    if customers < 1 or days < 1:
        raise CrmdError("the demo needs at least one customer and one day of history")
    with store.read() as conn:
        if q.max_event_seq(conn):
            raise CrmdError(
                f"the store {store.where} already has events; the demo only fills an empty "
                f"store (remove the file to start over)"
            )
    rng = random.Random(20261123)
    tz = site.timezone
    today = now.astimezone(tz).date()
    people, vehicles = [], []
    for n in range(1, customers + 1):
        cid, vid = f"C{n:04d}", f"V{n:04d}"
        birthday = date(1970 + rng.randrange(30), rng.randrange(1, 13), rng.randrange(1, 29))
        if n <= 3:  # a few members whose birthday is today or in the next days
            birthday = date(1985 + n, today.month, today.day) + timedelta(days=n - 1)
        people.append(
            {
                "id": cid,
                "name": rng.choice(SURNAMES) + rng.choice(GIVEN) + rng.choice(GIVEN),
                "phone": f"13{rng.randrange(10**9):09d}",
                "email": f"{cid.lower()}@example.com",
                "birthday": birthday,
                "member": n % 2 == 1,
                "opt_out": n % 50 == 0,
            }
        )
        vehicles.append(
            {
                "id": vid,
                "customer_id": cid,
                "vin": f"LSVDEMO{n:010d}",
                "plate": f"粤A{rng.randrange(10**5):05d}",
                "model": rng.choice(MODELS),
            }
        )
    events: list[NewEvent] = []
    per_day = (
        ("sale.delivered", max(2.0, customers * DELIVERIES_PER_CUSTOMER_DAY)),
        ("service.completed", max(1.0, customers * SERVICE_VISITS_PER_CUSTOMER_DAY)),
    )
    buyers = itertools.cycle(rng.sample(range(1, customers + 1), customers))  # one car each
    for back in range(days, -1, -1):
        day = today - timedelta(days=back)
        for kind, rate in per_day:
            for _ in range(int(rate) + (rng.random() < rate % 1)):
                n = next(buyers) if kind == "sale.delivered" else rng.randrange(1, customers + 1)
                at = datetime.combine(day, time(rng.randrange(9, 18), rng.randrange(60)), tz)
                if at > now:
                    continue
                data: dict[str, object] = {}
                if kind == "service.completed":
                    data = {"kind": "maintenance", "mileage": rng.randrange(5000, 60000)}
                event_id = f"demo-{len(events) + 1:05d}"
                events.append(NewEvent(kind, at, f"C{n:04d}", f"V{n:04d}", data, event_id))
    with Unit(store) as unit:
        engine.start_rules(unit, now, since=now - timedelta(days=days))
    with store.write() as conn:
        upsert_customers(conn, people, now)
        upsert_vehicles(conn, vehicles, now)
        result = record_events(conn, events, site.event_types, now)
    return result.added
