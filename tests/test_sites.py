"""Several sites (dealerships) in one PostgreSQL database, each in a schema of its own.

The two sites share customer ids, event ids and rule ids but not their rules or roles;
nothing one does shows in the other. The PostgreSQL tests are skipped without
CRMD_TEST_POSTGRES_URL.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner, Result
from daemon_child import CHILD, CRMD, RULES, wait_for_log
from sqlalchemy import Connection, create_engine, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from crmd.cli.commands import main
from crmd.errors import ConfigError
from crmd.intake.records import NewEvent, record_events, upsert_customers
from crmd.site import load_site, schema_problem
from crmd.store import heartbeats
from crmd.store.connections import application_name
from crmd.store.database import Store, StoreError
from crmd.store.sharing import RuleLocks, rule_key
from crmd.store.siteschema import (
    CHANNELS_NAMESPACE,
    EVENTS_KEY,
    NAMESPACE,
    RULES_NAMESPACE,
    START_KEY,
    channel_lock,
    rule_lock,
    site_lock,
)
from crmd.store.tables import customers, events, fires, tasks
from crmd.testing import Harness

# The same rule id in both sites, with different timing, roles and actions.
RULES_A = """
rules:
  - id: sales-callback
    when: {event: sale.delivered, after: 3 days, at: "09:00"}
    do:
      - task: {role: sales_callback, title: "甲店回访 {{ customer.name }}", due: 2 days}
      - sms: {text: "{{ customer.name }},感谢您在甲店购车"}
"""
RULES_B = """
rules:
  - id: sales-callback
    when: {event: sale.delivered, after: 1 day, at: "10:00"}
    do:
      - task: {role: bdc_agent, title: "乙店回访 {{ customer.name }}", due: 1 day}
"""


def make_site_dir(root: Path, schema: str | None, rules: str, roles: str = "") -> Path:
    (root / "rules").mkdir(parents=True)
    (root / "rules" / "rules.yaml").write_text(rules, encoding="utf-8")
    settings = f"name: {root.name}\n" + (f"store_schema: {schema}\n" if schema else "") + roles
    (root / "site.yaml").write_text(settings, encoding="utf-8")
    return root


def crmd(site: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["--site", str(site), *args])


def crmd_json(site: Path, *args: str) -> Any:
    result = crmd(site, *args, "--json")
    assert result.exit_code in (0, 3), result.output
    return json.loads(result.stdout)


# ------------------------------------------------------------------ names and keys


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("Dealer_A", "lowercase letters"),
        ("1dealer", "starting with a letter"),
        ("dealer-a", "lowercase letters"),
        ("dealer a", "lowercase letters"),
        ("d" * 64, "at most 63 characters (this one has 64)"),
        ("pg_dealer", "belong to PostgreSQL"),
        ("information_schema", "belong to PostgreSQL"),
    ],
)
def test_a_bad_schema_name_is_refused_with_the_rule(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, says: str
) -> None:
    monkeypatch.delenv("CRMD_STORE_SCHEMA", raising=False)
    site = make_site_dir(tmp_path / "site", f'"{name}"', RULES_A)
    with pytest.raises(ConfigError, match="store_schema") as caught:
        load_site(site)
    assert says in str(caught.value)
    assert "site.yaml" in str(caught.value)
    # The command line says the same, without a traceback.
    result = crmd(site, "tasks")
    assert result.exit_code == 1
    assert says in result.stderr
    assert "Traceback" not in result.output


def test_good_schema_names_pass_and_public_is_the_default_schema(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("dealer_a", "d", "shop_0042", "d" * 63):
        assert schema_problem(name) is None
    monkeypatch.delenv("CRMD_STORE_SCHEMA", raising=False)
    assert load_site(make_site_dir(tmp_path / "a", "dealer_a", RULES_A)).store_schema == "dealer_a"
    assert load_site(make_site_dir(tmp_path / "p", "public", RULES_A)).store_schema is None
    assert load_site(make_site_dir(tmp_path / "n", None, RULES_A)).store_schema is None
    monkeypatch.setenv("CRMD_STORE_SCHEMA", "dealer_b")  # the environment wins
    assert load_site(tmp_path / "a").store_schema == "dealer_b"
    monkeypatch.setenv("CRMD_STORE_SCHEMA", "Dealer B")
    with pytest.raises(ConfigError, match="CRMD_STORE_SCHEMA 'Dealer B'"):
        load_site(tmp_path / "a")


def test_a_schema_on_sqlite_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CRMD_STORE_URL", raising=False)
    monkeypatch.delenv("CRMD_STORE_SCHEMA", raising=False)
    site = make_site_dir(tmp_path / "site", "dealer_a", RULES_A)
    result = crmd(site, "tick")
    assert result.exit_code == 1
    assert "store_schema 'dealer_a' needs a PostgreSQL store" in result.stderr
    assert "its own SQLite file" in result.stderr
    assert "Traceback" not in result.output
    assert not (site / "store" / "crmd.db").exists()  # refused before anything was written
    with pytest.raises(StoreError, match="needs a PostgreSQL store"):
        Store(f"sqlite:///{tmp_path}/x.db", schema="dealer_a")
    # `public` is the public schema, which SQLite may name: nothing changes.
    Store(f"sqlite:///{tmp_path}/x.db", schema="public").dispose()


def test_lock_keys_differ_per_site_and_stay_as_they_were_without_a_schema() -> None:
    rule_keys = {rule_lock(s, "sales-callback") for s in (None, "dealer_a", "dealer_b")}
    assert len(rule_keys) == 3
    site_keys = {site_lock(s, k) for s in (None, "dealer_a", "dealer_b") for k in (1, 2, 3)}
    assert len(site_keys) == 9
    # A channel's rate-limit lock is the site's own, and never a rule's of the same name.
    sms_keys = {channel_lock(s, "sms") for s in (None, "dealer_a", "dealer_b")}
    assert len(sms_keys | {rule_lock(s, "sms") for s in (None, "dealer_a", "dealer_b")}) == 6
    assert channel_lock(None, "sms").values == (CHANNELS_NAMESPACE, rule_key("sms"))
    # Without a schema, the keys crmd always used, so older daemons still take turns.
    assert rule_lock(None, "sales-callback").values == (RULES_NAMESPACE, rule_key("sales-callback"))
    assert site_lock(None, EVENTS_KEY).values == (NAMESPACE, 1)
    # A site's keys are one 64-bit number, the same in every process (not Python's hash()).
    assert rule_lock("dealer_a", "sales-callback").values == (1911552351355992130,)
    assert site_lock("dealer_a", START_KEY).values == (-2175523652453927681,)
    # The session names by which `crmd status` finds a site's daemons.
    assert application_name("h1", 42) == "crmd 42 h1"
    assert application_name("h1", 42, "dealer_a") == "crmd 42 dealer_a h1"
    assert len(application_name("h" * 80, 4194304, "d" * 63).encode()) == 63


# ------------------------------------------------------------------ two sites, one database


@pytest.fixture
def two_sites(
    tmp_path: Path, pg_database: str, monkeypatch: pytest.MonkeyPatch
) -> tuple[Path, Path]:
    """Sites A and B, in schemas dealer_a and dealer_b of one PostgreSQL database."""
    monkeypatch.setenv("CRMD_STORE_URL", pg_database)
    monkeypatch.delenv("CRMD_STORE_SCHEMA", raising=False)
    monkeypatch.delenv("CRMD_SITE", raising=False)
    a = make_site_dir(
        tmp_path / "dealer_a", "dealer_a", RULES_A, "roles: [sales_callback, cr_manager]\n"
    )
    b = make_site_dir(tmp_path / "dealer_b", "dealer_b", RULES_B, "roles: [bdc_agent]\n")
    return a, b


@pytest.fixture
def two_harnesses(
    two_sites: tuple[Path, Path], pg_database: str
) -> Iterator[tuple[Harness, Harness]]:
    """Sites A and B driven in this process, their store connections closed afterwards."""
    ha = Harness(two_sites[0], store_url=pg_database)
    hb = Harness(two_sites[1], store_url=pg_database)
    try:
        yield ha, hb
    finally:
        ha.store.dispose()
        hb.store.dispose()


def write_csv(path: Path, text_: str) -> str:
    path.write_text(text_, encoding="utf-8")
    return str(path)


@pytest.mark.postgres
def test_two_sites_in_one_database_never_see_each_other(
    two_sites: tuple[Path, Path], pg_database: str, tmp_path: Path
) -> None:
    a, b = two_sites
    for site in (a, b):
        assert crmd(site, "--now", "2026-11-01T08:00", "tick").exit_code == 0
    header = "id,name,phone,email,birthday,member,opt_out\n"
    people_a = write_csv(tmp_path / "a.csv", header + "C001,张三,13800138000,,,false,false\n")
    people_b = write_csv(tmp_path / "b.csv", header + "C001,李四,13900139000,,,false,false\n")
    assert crmd(a, "import", people_a, "--kind", "customers").exit_code == 0
    assert crmd(b, "import", people_b, "--kind", "customers").exit_code == 0
    # The same event id in both sites: unique within a site, not across sites.
    sale = "id,type,at,customer_id,vehicle_id\nE1,sale.delivered,{at},C001,\n"
    sale_a = write_csv(tmp_path / "ea.csv", sale.format(at="2026-11-02T15:00"))
    result = crmd(a, "--now", "2026-11-02T16:00", "import", sale_a, "--kind", "events")
    assert result.exit_code == 0, result.output
    for site in (a, b):
        assert crmd(site, "--now", "2026-11-06T12:00", "tick").exit_code == 0

    tasks_a = crmd_json(a, "--now", "2026-11-06T12:00", "tasks", "--all")
    assert [(t["rule"], t["role"], t["title"]) for t in tasks_a] == [
        ("sales-callback", "sales_callback", "甲店回访 张三")
    ]
    assert crmd_json(b, "--now", "2026-11-06T12:00", "tasks", "--all") == []
    # The imported mobile is stored, and so texted, as E.164.
    assert [m["recipient"] for m in crmd_json(a, "outbox")] == ["+8613800138000"]
    assert crmd_json(b, "outbox") == []
    status_a = crmd_json(a, "--now", "2026-11-06T12:00", "status")
    status_b = crmd_json(b, "--now", "2026-11-06T12:00", "status")
    assert (status_a["schema"], status_a["open_tasks"], status_a["queued_messages"]) == (
        "dealer_a",
        1,
        1,
    )
    assert (status_b["schema"], status_b["open_tasks"], status_b["queued_messages"]) == (
        "dealer_b",
        0,
        0,
    )

    # B's own delivery, same ids: B's rule, role and customer; A is unchanged.
    sale_b = write_csv(tmp_path / "eb.csv", sale.format(at="2026-11-05T09:00"))
    assert crmd(b, "--now", "2026-11-06T12:00", "import", sale_b, "--kind", "events").exit_code == 0
    for site in (a, b):
        assert crmd(site, "--now", "2026-11-06T12:30", "tick").exit_code == 0
    tasks_b = crmd_json(b, "--now", "2026-11-06T12:30", "tasks", "--all")
    assert [(t["role"], t["title"]) for t in tasks_b] == [("bdc_agent", "乙店回访 李四")]
    assert len(crmd_json(a, "--now", "2026-11-06T12:30", "tasks", "--all")) == 1
    assert crmd_json(b, "outbox") == []

    # Raw SQL of a site's store reads its own schema too (search_path).
    for schema, name in (("dealer_a", "张三"), ("dealer_b", "李四")):
        store = Store.open(pg_database, schema=schema)
        try:
            with store.read() as conn:
                assert conn.execute(text("SELECT name FROM customers")).scalars().all() == [name]
        finally:
            store.dispose()
    # Nothing landed in the public schema, which stays an empty store of its own.
    public = Store.open(pg_database)
    try:
        with public.read() as conn:
            assert conn.execute(select(func.count()).select_from(tasks)).scalar_one() == 0
            assert conn.execute(select(func.count()).select_from(fires)).scalar_one() == 0
    finally:
        public.dispose()


@pytest.mark.postgres
def test_the_same_rule_id_in_two_sites_runs_at_once(
    two_harnesses: tuple[Harness, Harness],
) -> None:
    """Site A's daemon holding `sales-callback` does not stop site B's `sales-callback`."""
    ha, hb = two_harnesses
    for h in (ha, hb):
        h.tick("2026-11-01 08:00")
        h.customer("C001", name="张三", phone="13800138000")
        h.event("sale.delivered", "2026-11-02 15:00", "C001", event_id="E1")
    with RuleLocks(ha.store).hold("sales-callback") as mine:
        assert mine  # a daemon of A is evaluating A's sales-callback
        report_b = hb.tick("2026-11-06 12:00")
        assert [f.rule_id for f in report_b.fires] == ["sales-callback"]
        assert ha.tick("2026-11-06 12:00").fires == []  # A's own second daemon skips it
    assert [f.rule_id for f in ha.tick("2026-11-06 12:01").fires] == ["sales-callback"]
    assert [t.role for t in ha.tasks()] == ["sales_callback"]
    assert [t.role for t in hb.tasks()] == ["bdc_agent"]


@pytest.mark.postgres
def test_event_writers_take_turns_within_a_site_not_across_sites(
    two_harnesses: tuple[Harness, Harness], pg_database: str
) -> None:
    """While site A writes events, A's second writer waits and site B's does not."""
    ha, hb = two_harnesses

    def record(conn: Connection, h: Harness, event_id: str) -> None:
        new = [NewEvent("sale.delivered", h.local("2026-11-20 09:00"), None, id=event_id)]
        record_events(conn, new, h.site.event_types, h.local("2026-11-20 09:00"))

    def write_within(store: Store, h: Harness, event_id: str, wait_ms: int) -> None:
        with store.engine.begin() as conn:
            conn.execute(text(f"SET LOCAL lock_timeout = '{wait_ms}ms'"))
            record(conn, h, event_id)

    other_a = Store.open(pg_database, schema="dealer_a", migrate=False)
    first = ha.store.engine.connect()
    try:
        record(first, ha, "E1")  # uncommitted: A's event lock is held
        write_within(hb.store, hb, "E1", 300)  # B goes through at once
        with pytest.raises(OperationalError, match="lock timeout"):
            write_within(other_a, ha, "E2", 300)  # A's second writer waits its turn
        first.commit()
    finally:
        first.close()
        other_a.dispose()
    write_within(ha.store, ha, "E2", 10_000)
    with ha.store.read() as conn:
        assert conn.execute(select(events.c.id).order_by(events.c.seq)).scalars().all() == [
            "E1",
            "E2",
        ]
    with hb.store.read() as conn:
        assert conn.execute(select(events.c.id)).scalars().all() == ["E1"]


@pytest.mark.postgres
@pytest.mark.slow
def test_a_daemon_per_site_fires_each_sites_rules_and_status_counts_its_own(
    tmp_path: Path, pg_database: str
) -> None:
    """Two daemons, one per site, at once on one database, with the same rule and customer
    ids: each does its own site's work, and `crmd status` lists its own site's daemon."""
    deliveries = 50
    now = datetime.now(UTC)
    harnesses = []
    for name in ("dealer_a", "dealer_b"):
        root = make_site_dir(tmp_path / name, name, RULES)
        h = Harness(root, store_url=pg_database)
        h.tick(now - timedelta(days=5))
        people = [{"id": f"C{n:03}", "name": f"{name}{n}"} for n in range(deliveries)]
        sales = [
            NewEvent("sale.delivered", now - timedelta(days=4, minutes=n), f"C{n:03}", id=f"D{n}")
            for n in range(deliveries)
        ]
        with h.store.write() as conn:
            upsert_customers(conn, people, now)
            record_events(conn, sales, h.site.event_types, now)
        harnesses.append(h)
    env = {**os.environ, "CRMD_STORE_URL": pg_database}
    env.pop("CRMD_STORE_SCHEMA", None)
    children: list[subprocess.Popen[bytes]] = []
    try:
        for h in harnesses:
            with (h.root / "daemon.log").open("ab") as log:
                children.append(
                    subprocess.Popen(
                        [sys.executable, "-c", CHILD, str(h.root)], stdout=log, stderr=log, env=env
                    )
                )
        for h, child in zip(harnesses, children, strict=True):
            _wait_for_fires(h, child, 2 * deliveries + 5)
        for h, child in zip(harnesses, children, strict=True):
            result = subprocess.run(
                [*CRMD, "--site", str(h.root), "status", "--json"],
                capture_output=True,
                text=True,
                timeout=60,
                env=env,
            )
            assert result.returncode == 0, result.stderr
            assert [d["pid"] for d in json.loads(result.stdout)["daemons"]] == [child.pid]
        # `crmd reload` of site A asks A's daemon only.
        a, b = harnesses
        result = subprocess.run(
            [*CRMD, "--site", str(a.root), "reload"],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )
        assert result.returncode == 0, result.stderr
        assert f"asked daemon PID {children[0].pid} to reload" in result.stdout
        wait_for_log(a.root / "daemon.log", "reloaded: 3 rules")
        for child in children:
            child.send_signal(signal.SIGTERM)
        for child in children:
            assert child.wait(30) == 0
        assert "reloaded" not in (b.root / "daemon.log").read_text(errors="replace")
        for h in harnesses:
            assert "Traceback" not in (h.root / "daemon.log").read_text(errors="replace")
            name = h.site.store_schema
            welcome = sorted(t.title for t in h.tasks() if t.rule_id == "delivery-welcome")
            assert welcome == sorted(f"欢迎 {name}{n}" for n in range(deliveries))
            assert sum(1 for f in h.fires() if f.rule_id == "sales-callback") == deliveries
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait(30)
        for h in harnesses:
            h.store.dispose()


def _wait_for_fires(h: Harness, child: subprocess.Popen[bytes], at_least: int) -> None:
    """Until the site has this many fires; bounded by 60 s."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert child.poll() is None, f"a daemon exited early; see {h.root / 'daemon.log'}"
        if len(h.fires()) >= at_least:
            return
        time.sleep(0.1)
    raise AssertionError(f"{h.root.name}: fewer than {at_least} fires after 60 s")


# ------------------------------------------------------------------ migrations


@pytest.mark.postgres
def test_a_new_schema_is_made_and_migrated_on_first_use_beside_a_public_store(
    tmp_path: Path, pg_database: str
) -> None:
    public = Harness(tmp_path / "public", RULES_B.replace("bdc_agent", "sales"), pg_database)
    public.tick("2026-11-01 08:00")
    public.customer("C001", name="王五")
    public.store.dispose()

    site_a = Store(pg_database, schema="dealer_a")
    site_b = Store(pg_database, schema="dealer_b")
    try:
        site_a.migrate("0002")  # each site migrates on its own
        site_b.migrate()
        assert site_a.revision() == "0002"
        assert site_b.revision() == site_b.head_revision()
        site_a.migrate()
        assert site_a.revision() == site_a.head_revision()
        with site_a.read() as conn:
            schemas = set(conn.execute(text("SELECT nspname FROM pg_namespace")).scalars())
            versions = conn.execute(
                text(
                    "SELECT table_schema FROM information_schema.tables "
                    "WHERE table_name = 'alembic_version' ORDER BY table_schema"
                )
            ).scalars()
            assert {"dealer_a", "dealer_b"} <= schemas
            assert list(versions) == ["dealer_a", "dealer_b", "public"]
    finally:
        site_a.dispose()
        site_b.dispose()
    # The public store opens as before, with its rows and its own revision.
    again = Harness(tmp_path / "public", store_url=pg_database)
    try:
        assert again.store.schema is None
        assert again.store.revision() == again.store.head_revision()
        with again.store.read() as conn:
            assert list(conn.execute(select(customers.c.name)).scalars()) == ["王五"]
    finally:
        again.store.dispose()


@pytest.fixture
def plain_role(pg_database: str) -> Iterator[str]:
    """The store URL as a new login role that may not create schemas in the database."""
    name = f"crmd_site_{uuid.uuid4().hex[:8]}"
    admin = create_engine(pg_database, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE ROLE {name} LOGIN"))
    try:
        yield make_url(pg_database).set(username=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            # Its sessions and its schema go first: a role that owns objects stays.
            conn.execute(
                text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = :n"),
                {"n": name},
            )
            conn.execute(text("DROP SCHEMA IF EXISTS dealer_c CASCADE"))
            conn.execute(text(f"DROP ROLE {name}"))
        admin.dispose()


@pytest.mark.postgres
def test_a_role_that_may_not_create_schemas_is_told_what_to_do(
    plain_role: str, pg_database: str
) -> None:
    with pytest.raises(StoreError) as caught:
        Store.open(plain_role, schema="dealer_c").dispose()
    message = str(caught.value)
    assert "cannot create schema dealer_c" in message
    assert "permission denied" in message
    role = make_url(plain_role).username
    assert "CREATE SCHEMA dealer_c AUTHORIZATION <crmd's role>" in message
    # An administrator makes the schema for the role: the site opens and migrates.
    admin = create_engine(pg_database, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE SCHEMA dealer_c AUTHORIZATION {role}"))
    admin.dispose()
    store = Store.open(plain_role, schema="dealer_c")
    try:
        assert store.revision() == store.head_revision()
    finally:
        store.dispose()


@pytest.mark.postgres
def test_upgrading_a_site_changes_its_schema_only(pg_database: str) -> None:
    """0003 rewrites old outbox states with raw SQL: in the site's schema, not in public."""
    old_message = (
        "INSERT INTO outbox (fire_id, rule_id, channel, recipient, subject, body, status, "
        "not_before, attempts, created_at) VALUES (1, 'r', 'sms', '138', '', 'hi', 'failed', "
        "now(), 3, now())"
    )
    stores = [Store(pg_database), Store(pg_database, schema="dealer_a")]
    try:
        for store in stores:  # the public store first, as a group that adds sites later
            store.migrate("0002")
            with store.write() as conn:
                conn.execute(text(old_message))
        stores[1].migrate()
        with stores[1].read() as conn:
            assert conn.execute(text("SELECT status FROM outbox")).scalars().all() == ["dead"]
        assert stores[0].revision() == "0002"
        assert stores[1].revision() == stores[1].head_revision()
        with stores[0].read() as conn:
            assert conn.execute(text("SELECT status FROM outbox")).scalars().all() == ["failed"]
    finally:
        for store in stores:
            store.dispose()


# ------------------------------------------------------------------ crmd sites


@pytest.mark.postgres
def test_sites_lists_a_groups_sites_without_changing_any(
    tmp_path: Path, pg_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CRMD_STORE_URL", pg_database)
    monkeypatch.delenv("CRMD_STORE_SCHEMA", raising=False)
    group = tmp_path / "sites"
    a = make_site_dir(group / "dealer_a", "dealer_a", RULES_A, "timezone: Asia/Shanghai\n")
    make_site_dir(group / "dealer_b", "dealer_b", RULES_B)  # its schema was never created
    make_site_dir(group / "dealer_c", "dealer_c", RULES_B)  # made by an older crmd
    (group / "broken").mkdir()
    (group / "broken" / "site.yaml").write_text("store_schema: Bad-Name\n", encoding="utf-8")
    (group / "not_a_site").mkdir()
    older = Store(pg_database, schema="dealer_c")
    older.migrate("0003")
    older.dispose()
    h = Harness(a, store_url=pg_database)
    h.tick("2026-11-20 09:00")  # the rule starts
    h.customer("C1", name="张三", phone="13800138000")
    h.event("sale.delivered", "2026-11-20 10:00", "C1")
    h.event("sale.delivered", "2026-11-20 11:00", "C9")  # no such customer: a failed fire
    h.tick("2026-11-23 09:00")  # one task, one message
    with h.store.write() as conn:
        heartbeats.save_heartbeat(
            conn,
            "shop-host:4242",
            host="shop-host",
            pid=4242,
            state="running",
            started_at=h.local("2026-11-23 08:00"),
            last_tick_at=h.local("2026-11-23 09:00"),
            rules=1,
            updated_at=h.local("2026-11-23 09:00"),
        )
    # A daemon of dealer_a is alive: its session is open under its name.
    live = psycopg.connect(
        make_url(pg_database).set(drivername="postgresql").render_as_string(False),
        application_name=application_name("shop-host", 4242, "dealer_a"),
    )
    try:
        now = ["--now", "2026-11-23T09:05:00+08:00"]
        result = CliRunner().invoke(main, [*now, "sites", str(group), "--json"])
        assert result.exit_code == 3, result.output  # not every site has a running daemon
        listed = {row["site"]: row for row in json.loads(result.stdout)}
        assert sorted(listed) == ["broken", "dealer_a", "dealer_b", "dealer_c"]
        assert listed["dealer_a"]["state"] == "running"
        assert listed["dealer_a"]["pid"] == 4242
        assert listed["dealer_a"]["lag_seconds"] == 300.0
        assert (listed["dealer_a"]["open_tasks"], listed["dealer_a"]["queued_messages"]) == (1, 1)
        assert listed["dealer_a"]["failed_fires"] == 1
        assert listed["dealer_b"]["state"] == "not created"
        assert (listed["dealer_c"]["state"], listed["dealer_c"]["error"]) == (
            "needs upgrade",
            "store at revision 0003",
        )
        assert listed["broken"]["state"] == "error"
        assert "store_schema" in listed["broken"]["error"]
        table = CliRunner().invoke(
            main, ["--now", "2026-11-23T09:05:00+08:00", "sites", str(group)]
        )
        assert "2026-11-23 09:00" in table.stdout  # dealer_a's last tick, in its own zone
        assert "failed fires" in table.stdout
    finally:
        live.close()
        h.store.dispose()
    public = Store(pg_database)
    with public.read() as conn:  # looking created and upgraded nothing
        schemas = conn.execute(
            text("SELECT table_schema FROM information_schema.tables WHERE table_name = :t"),
            {"t": "alembic_version"},
        ).scalars()
        assert sorted(schemas) == ["dealer_a", "dealer_c"]
    public.dispose()
    checked = Store(pg_database, schema="dealer_c")
    assert checked.revision() == "0003"
    checked.dispose()


def test_sites_says_when_a_directory_has_none_and_refuses_one_sites_schema(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CRMD_STORE_SCHEMA", raising=False)
    (tmp_path / "empty").mkdir()
    result = CliRunner().invoke(main, ["sites", str(tmp_path / "empty")])
    assert result.exit_code == 3
    assert "no sites in" in result.stdout
    monkeypatch.setenv("CRMD_STORE_SCHEMA", "dealer_a")
    result = CliRunner().invoke(main, ["sites", str(tmp_path / "empty")])
    assert result.exit_code == 1
    assert "unset it to list several sites" in result.stderr
