"""Importing CSV files: every row checked first, then all rows stored at once, or none."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import Table, func, select

import crmd.intake.importer
import crmd.intake.records
from crmd.errors import ImportFileError
from crmd.intake.importer import import_csv
from crmd.intake.records import IntakeResult
from crmd.site import Site, load_site
from crmd.store.database import Store
from crmd.store.tables import customers, events, vehicles

NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)

CUSTOMERS = """\
id,name,phone,email,birthday,member,opt_out,来源
C001,王伟,+86 138 0013 8000,wang@example.com,1990-03-05,是,否,展厅
C002,李芳,0755-8888 1234,,1985/12/1,yes,,
C003,张娜,13900139000,zhang@example.com,,0,TRUE,抖音
"""

VEHICLES = """\
id,customer_id,vin,plate,model
V001,C001,LSVAA4187E2000001,粤A12345,朗逸
V002,C002,LSVAA4187E2000002,粤B67890,途观L
"""


@pytest.fixture
def site(tmp_path: Path, site_store: str | None) -> Site:
    # On SQLite, the file the CLI opens for this site; else CRMD_STORE_URL (site_store).
    (tmp_path / "site.yaml").write_text("store: sqlite:///crmd.db\n", encoding="utf-8")
    return load_site(tmp_path)


@pytest.fixture
def store(tmp_path: Path, site: Site, site_store: str | None) -> Iterator[Store]:
    store = Store.open(site_store or f"sqlite:///{tmp_path}/crmd.db")
    assert store.url == site.store_url
    yield store
    store.dispose()


def write(path: Path, text: str, *, bom: bool = False) -> Path:
    path.write_bytes(text.encode("utf-8-sig" if bom else "utf-8"))
    return path


def count(store: Store, table: Table) -> int:
    with store.read() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def row_of(store: Store, table: Table, row_id: str) -> Any:
    with store.read() as conn:
        return conn.execute(select(table).where(table.c.id == row_id)).one()


def counts(result: IntakeResult) -> tuple[int, int, int]:
    return result.added, result.changed, result.unchanged


def rejected(store: Store, site: Site, path: Path, kind: str) -> str:
    with pytest.raises(ImportFileError) as info:
        import_csv(store, site, path, kind, NOW)
    return str(info.value)


def import_people(store: Store, site: Site, tmp_path: Path) -> None:
    import_csv(store, site, write(tmp_path / "customers.csv", CUSTOMERS), "customers", NOW)


def import_cars(store: Store, site: Site, tmp_path: Path) -> None:
    import_people(store, site, tmp_path)
    import_csv(store, site, write(tmp_path / "vehicles.csv", VEHICLES), "vehicles", NOW)


# ---------------------------------------------------------------- customers


@pytest.mark.parametrize("bom", [True, False], ids=["bom", "no-bom"])
def test_customers_with_chinese_names_import(
    store: Store, site: Site, tmp_path: Path, bom: bool
) -> None:
    path = write(tmp_path / "customers.csv", CUSTOMERS, bom=bom)

    assert counts(import_csv(store, site, path, "customers", NOW)) == (3, 0, 0)

    wang = row_of(store, customers, "C001")
    assert wang.name == "王伟"
    assert wang.phone == "+8613800138000"
    assert wang.birthday == date(1990, 3, 5)
    assert wang.birthday_md == 305
    assert (wang.member, wang.opt_out) == (True, False)
    assert wang.attributes == {"来源": "展厅"}
    li = row_of(store, customers, "C002")
    assert li.phone == "0755-88881234"
    assert li.birthday == date(1985, 12, 1)
    assert (li.email, li.attributes) == ("", {})
    zhang = row_of(store, customers, "C003")
    assert (zhang.birthday, zhang.member, zhang.opt_out) == (None, False, True)


def test_phone_numbers_and_addresses_are_checked_with_the_row(
    store: Store, site: Site, tmp_path: Path
) -> None:
    path = write(
        tmp_path / "customers.csv",
        "id,name,phone,email\n"
        "C001,王伟,12800138000,wang@example.com\n"  # 12x is no mobile prefix
        "C002,李芳,8888 1234,li@example\n"  # a landline without its area code; no domain
        "C003,张娜,139 0013 9000,zhang@example.com\n"
        "C004,刘强,020-8888 6666,liu qiang@example.com\n",
    )

    lines = rejected(store, site, path, "customers").splitlines()

    assert [line.split(": ", 1)[0] for line in lines[:-1]] == [
        f"{path}:row 2",
        f"{path}:row 3",
        f"{path}:row 3",
        f"{path}:row 5",
    ]
    assert "phone 128****8000 is not a valid phone number" in lines[0]
    assert "a landline with its area code like 020-8888 6666" in lines[1]
    assert "email 'li@example' is not an e-mail address" in lines[2]
    assert "email 'liu qiang@example.com' is not an e-mail address" in lines[3]
    assert lines[-1].startswith(f"{path}: 4 problems; nothing was imported.")
    assert count(store, customers) == 0


def test_a_mobile_is_stored_as_e164_and_a_landline_as_written(
    store: Store, site: Site, tmp_path: Path
) -> None:
    path = write(
        tmp_path / "customers.csv",
        "id,name,phone\n"
        "C001,王伟,１３８ ００１３ ８０００\n"  # full-width, from a Chinese input method
        "C002,李芳,0086-139-0013-9000\n"
        "C003,张娜,020-8888 6666\n"
        "C004,刘强,400-800-8888\n"  # a service number: kept as written too
        "C005,赵六,\n",
    )

    import_csv(store, site, path, "customers", NOW)

    phones = [row_of(store, customers, f"C00{n}").phone for n in range(1, 6)]
    assert phones == ["+8613800138000", "+8613900139000", "020-88886666", "400-800-8888", ""]


def test_reimporting_the_same_file_changes_nothing(
    store: Store, site: Site, tmp_path: Path
) -> None:
    path = write(tmp_path / "customers.csv", CUSTOMERS)
    import_csv(store, site, path, "customers", NOW)
    before = row_of(store, customers, "C001")

    assert counts(import_csv(store, site, path, "customers", NOW)) == (0, 0, 3)
    assert row_of(store, customers, "C001") == before


def test_a_changed_row_updates_the_customer(store: Store, site: Site, tmp_path: Path) -> None:
    import_people(store, site, tmp_path)
    changed = CUSTOMERS.replace("13900139000", "13900139999")
    path = write(tmp_path / "customers.csv", changed)

    assert counts(import_csv(store, site, path, "customers", NOW)) == (0, 1, 2)
    assert row_of(store, customers, "C003").phone == "+8613900139999"  # a mobile, as E.164


def test_a_bad_row_rejects_the_whole_file(store: Store, site: Site, tmp_path: Path) -> None:
    path = write(
        tmp_path / "customers.csv",
        "id,name,birthday\nC001,王伟,1990-03-05\nC002,李芳,\nC003,张娜,1990-13-01\nC004,刘强,\n",
    )

    message = rejected(store, site, path, "customers")

    assert f"{path}:row 4: birthday '1990-13-01' is not a date; write YYYY-MM-DD" in message
    assert message.splitlines()[0] == (
        f"{path}:row 4: birthday '1990-13-01' is not a date; write YYYY-MM-DD"
    )
    assert message.splitlines()[-1] == (
        f"{path}: 1 problem; nothing was imported. Fix the file and import it again."
    )
    assert count(store, customers) == 0


def test_every_problem_of_a_file_is_listed_by_row(store: Store, site: Site, tmp_path: Path) -> None:
    path = write(
        tmp_path / "customers.csv",
        "id,name,member,opt_out,birthday\n"
        "C001,王伟,maybe,否,\n"
        ",李芳,,,\n"
        "C003,张娜,1,2,2026/02/30\n",
    )

    lines = rejected(store, site, path, "customers").splitlines()

    assert lines == [
        f"{path}:row 2: member 'maybe' is not yes or no; write true/false, yes/no, 1/0 or 是/否 "
        "(empty means no)",
        f"{path}:row 3: id is empty; every row needs an id",
        f"{path}:row 4: birthday '2026/02/30' is not a date; write YYYY-MM-DD",
        f"{path}:row 4: opt_out '2' is not yes or no; write true/false, yes/no, 1/0 or 是/否 "
        "(empty means no)",
        f"{path}: 4 problems; nothing was imported. Fix the file and import it again.",
    ]


def test_duplicate_ids_name_both_rows(store: Store, site: Site, tmp_path: Path) -> None:
    path = write(tmp_path / "customers.csv", "id,name\nC001,王伟\nC002,李芳\nC001,王伟伟\n")

    message = rejected(store, site, path, "customers")

    assert f"{path}:row 4: id 'C001' is also on row 2; each row needs its own id" in message
    assert count(store, customers) == 0


def test_a_missing_column_is_named(store: Store, site: Site, tmp_path: Path) -> None:
    path = write(tmp_path / "vehicles.csv", "id,vin,plate\nV001,LSV1,粤A1\n")

    message = rejected(store, site, path, "vehicles")

    assert message == (
        f"{path}: missing column 'customer_id'; the header row (row 1) must name it "
        "(columns for vehicles: id, customer_id, vin, plate, model)"
    )


def test_a_column_named_twice_is_refused(store: Store, site: Site, tmp_path: Path) -> None:
    path = write(tmp_path / "customers.csv", "id,name,ID\nC001,王伟,C001\n")

    assert rejected(store, site, path, "customers") == (
        f"{path}:row 1: column 'ID' appears more than once; name each column once"
    )


def test_a_value_under_an_unnamed_column_is_refused(
    store: Store, site: Site, tmp_path: Path
) -> None:
    # Spreadsheets often save trailing empty columns; they are fine while they stay empty.
    path = write(tmp_path / "customers.csv", "id,name,,\nC001,王伟,,\nC002,李芳,,VIP\n")

    assert rejected(store, site, path, "customers").splitlines()[0] == (
        f"{path}:row 3: column D has a value but no name in the header row; "
        "name the column in row 1 or clear it"
    )


def test_an_empty_file_needs_a_header(store: Store, site: Site, tmp_path: Path) -> None:
    message = rejected(store, site, write(tmp_path / "e.csv", "", bom=True), "events")

    assert "the first row must be a header naming the columns" in message


def test_rows_are_numbered_as_a_spreadsheet_shows_them(
    store: Store, site: Site, tmp_path: Path
) -> None:
    # A cell with a line break is still one row; blank rows count but are skipped.
    path = write(
        tmp_path / "customers.csv",
        'id,name,地址\nC001,王伟,"广州市\n天河区"\n\nC003,张娜,\nC004,刘强,,extra\n',
    )

    message = rejected(store, site, path, "customers")

    assert message.splitlines()[0] == (
        f"{path}:row 5: has 4 cells but the header names 3 columns; "
        "name the extra columns in row 1 or clear them"
    )


def test_a_file_that_is_not_utf8_is_refused(store: Store, site: Site, tmp_path: Path) -> None:
    path = tmp_path / "customers.csv"
    path.write_bytes("id,name\nC001,王伟\n".encode("gbk"))

    message = rejected(store, site, path, "customers")

    assert message.startswith(f"{path}: line 2 is not UTF-8 text")
    assert "CSV UTF-8" in message


def test_a_long_list_of_problems_is_cut_short(store: Store, site: Site, tmp_path: Path) -> None:
    rows = "".join(f"C{n:03d},{n}\n" for n in range(70))
    path = write(tmp_path / "customers.csv", "id,member\n" + rows)

    lines = rejected(store, site, path, "customers").splitlines()

    assert len(lines) == 52
    assert lines[0].startswith(f"{path}:row 4: member '2'")
    assert lines[49].startswith(f"{path}:row 53: member '51'")
    assert lines[50] == "... and 18 more"


# ---------------------------------------------------------------- vehicles


def test_vehicles_import_for_known_customers(store: Store, site: Site, tmp_path: Path) -> None:
    import_people(store, site, tmp_path)
    path = write(tmp_path / "vehicles.csv", VEHICLES)

    assert counts(import_csv(store, site, path, "vehicles", NOW)) == (2, 0, 0)
    car = row_of(store, vehicles, "V002")
    assert (car.customer_id, car.plate, car.model) == ("C002", "粤B67890", "途观L")
    assert counts(import_csv(store, site, path, "vehicles", NOW)) == (0, 0, 2)


def test_vehicles_of_an_unknown_customer_are_refused(
    store: Store, site: Site, tmp_path: Path
) -> None:
    import_people(store, site, tmp_path)
    path = write(
        tmp_path / "vehicles.csv", VEHICLES + "V003,C999,LSV3,粤A3,宝来\nV004,,LSV4,粤A4,宝来\n"
    )

    lines = rejected(store, site, path, "vehicles").splitlines()

    assert lines[:2] == [
        f"{path}:row 4: customer 'C999' is not in the store; import customers first",
        f"{path}:row 5: customer_id is empty; every vehicle belongs to a customer",
    ]
    assert count(store, vehicles) == 0


# ---------------------------------------------------------------- events


def test_event_extra_columns_become_data(store: Store, site: Site, tmp_path: Path) -> None:
    import_cars(store, site, tmp_path)
    path = write(
        tmp_path / "events.csv",
        "id,type,at,customer_id,vehicle_id,kind,mileage,score,code,备注\n"
        "E1,service.completed,2026-11-20T10:00+08:00,C001,V001,maintenance,45000,4.5,007,\n"
        "E2,sale.delivered,2026-11-21T10:00+08:00,C002,,,,,,新车交付\n",
    )

    assert counts(import_csv(store, site, path, "events", NOW)) == (2, 0, 0)

    first = row_of(store, events, "E1")
    # Plain whole numbers become ints (rules compare them); other values stay as written.
    assert first.data == {"kind": "maintenance", "mileage": 45000, "score": "4.5", "code": "007"}
    assert (first.customer_id, first.vehicle_id) == ("C001", "V001")
    second = row_of(store, events, "E2")
    assert second.data == {"备注": "新车交付"}
    assert second.vehicle_id is None
    assert counts(import_csv(store, site, path, "events", NOW)) == (0, 0, 2)


def test_an_event_time_without_offset_is_site_local(
    store: Store, site: Site, tmp_path: Path
) -> None:
    path = write(
        tmp_path / "events.csv",
        "id,type,at\nE1,member.joined,2026-11-20 09:30\nE2,member.joined,2026-11-20T09:30Z\n",
    )

    import_csv(store, site, path, "events", NOW)

    assert site.timezone.key == "Asia/Shanghai"
    assert row_of(store, events, "E1").at == datetime(2026, 11, 20, 1, 30, tzinfo=UTC)
    assert row_of(store, events, "E2").at == datetime(2026, 11, 20, 9, 30, tzinfo=UTC)


def test_unknown_event_types_and_bad_times_are_refused(
    store: Store, site: Site, tmp_path: Path
) -> None:
    path = write(
        tmp_path / "events.csv",
        "id,type,at\nE1,sale.deliverd,2026-11-20 09:30\nE2,member.joined,2026-11-20 25:00\nE3,,\n",
    )

    lines = rejected(store, site, path, "events").splitlines()

    assert lines[0].startswith(
        f"{path}:row 2: event type 'sale.deliverd' is not known "
        "(did you mean 'sale.delivered'?); known types: sale.delivered, "
    )
    assert lines[0].endswith("A site adds its own under event_types: in site.yaml")
    assert lines[1] == (
        f"{path}:row 3: at '2026-11-20 25:00' is not an ISO-8601 time; write e.g. "
        "2026-11-23 09:00 (site time, Asia/Shanghai) or 2026-11-23T09:00+08:00"
    )
    assert lines[2] == f"{path}:row 4: type is empty; write the event type, e.g. sale.delivered"
    assert lines[3].startswith(f"{path}:row 4: at is empty; write when it happened")
    assert count(store, events) == 0


def test_events_naming_unknown_customers_or_vehicles_are_refused(
    store: Store, site: Site, tmp_path: Path
) -> None:
    import_cars(store, site, tmp_path)
    path = write(
        tmp_path / "events.csv",
        "id,type,at,customer_id,vehicle_id\n"
        "E1,sale.delivered,2026-11-20 09:30,C001,V001\n"
        "E2,sale.delivered,2026-11-20 09:30,C0001,V001\n"
        "E3,sale.delivered,2026-11-20 09:30,C002,V009\n",
    )

    lines = rejected(store, site, path, "events").splitlines()

    assert lines[:2] == [
        f"{path}:row 3: customer 'C0001' is not in the store; check the id, or import "
        "customers first",
        f"{path}:row 4: vehicle 'V009' is not in the store; check the id, or import vehicles first",
    ]
    assert count(store, events) == 0


def test_an_event_naming_another_customers_vehicle_is_refused(
    store: Store, site: Site, tmp_path: Path
) -> None:
    import_cars(store, site, tmp_path)  # V001 is C001's, V002 is C002's
    path = write(
        tmp_path / "events.csv",
        "id,type,at,customer_id,vehicle_id\n"
        "E1,sale.delivered,2026-11-20 09:30,C001,V001\n"
        "E2,sale.delivered,2026-11-20 09:30,C001,V002\n"
        "E3,service.completed,2026-11-20 10:00,C002,V001\n"
        "E4,service.completed,2026-11-20 10:00,,V002\n"  # no customer named: nothing to match
        "E5,sale.delivered,2026-11-20 09:30,C0002,V002\n",  # unknown customer: said once
    )

    lines = rejected(store, site, path, "events").splitlines()

    assert lines == [
        f"{path}:row 3: vehicle 'V002' belongs to customer 'C002', not 'C001'; check the "
        "vehicle_id and the customer_id",
        f"{path}:row 4: vehicle 'V001' belongs to customer 'C001', not 'C002'; check the "
        "vehicle_id and the customer_id",
        f"{path}:row 6: customer 'C0002' is not in the store; check the id, or import "
        "customers first",
        f"{path}: 3 problems; nothing was imported. Fix the file and import it again.",
    ]
    assert count(store, events) == 0


def test_owners_are_checked_across_chunks(
    store: Store, site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import_cars(store, site, tmp_path)
    monkeypatch.setattr(crmd.intake.importer, "CHUNK", 2)  # vehicles known from an earlier look-up
    rows = "".join(
        f"E{n},sale.delivered,2026-11-20 09:30,C00{1 + n % 2},V00{1 + n % 2}\n" for n in range(6)
    )
    path = write(
        tmp_path / "events.csv",
        "id,type,at,customer_id,vehicle_id\n" + rows + "E9,sale.delivered,2026-11-21,C001,V002\n",
    )

    (problem, _summary) = rejected(store, site, path, "events").splitlines()

    assert problem.startswith(f"{path}:row 8: vehicle 'V002' belongs to customer 'C002'")


def test_large_files_are_checked_and_written_in_chunks(
    store: Store, site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(crmd.intake.importer, "CHUNK", 3)
    import_cars(store, site, tmp_path)
    rows = "".join(
        f"E{n},service.completed,2026-11-{n + 1:02d} 10:00,C00{n % 3 + 1},,{n}\n" for n in range(10)
    )
    path = write(tmp_path / "events.csv", "id,type,at,customer_id,vehicle_id,n\n" + rows)

    assert counts(import_csv(store, site, path, "events", NOW)) == (10, 0, 0)
    assert row_of(store, events, "E9").data == {"n": 9}

    # A duplicate many chunks after the first and an unknown customer are still found.
    bad = (
        rows + "E0,service.completed,2026-11-20 10:00,C001,,\nE99,sale.delivered,2026-11-20,C9,,\n"
    )
    message = rejected(
        store,
        site,
        write(tmp_path / "more.csv", "id,type,at,customer_id,vehicle_id,n\n" + bad),
        "events",
    )
    assert "row 12: id 'E0' is also on row 2" in message
    assert "row 13: customer 'C9' is not in the store" in message


def test_a_failure_half_way_stores_nothing(
    store: Store, site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(crmd.intake.importer, "CHUNK", 2)
    calls: list[int] = []

    def failing_upsert(conn: Any, records: Any, now: datetime) -> IntakeResult:
        calls.append(len(records))
        if len(calls) == 2:
            raise RuntimeError("disk full")
        return upsert(conn, records, now)

    upsert = crmd.intake.records.upsert_customers
    monkeypatch.setattr(crmd.intake.importer, "upsert_customers", failing_upsert)
    path = write(tmp_path / "customers.csv", CUSTOMERS)

    with pytest.raises(RuntimeError, match="disk full"):
        import_csv(store, site, path, "customers", NOW)

    assert calls == [2, 1]
    assert count(store, customers) == 0


def test_a_file_changed_during_the_import_stores_nothing(
    store: Store, site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path / "customers.csv", CUSTOMERS)
    check = crmd.intake.importer._check

    def check_then_edit(*args: Any) -> Any:
        found = check(*args)
        with path.open("a", encoding="utf-8") as f:
            f.write("C004,刘强,,,,,,\n")
        return found

    monkeypatch.setattr(crmd.intake.importer, "_check", check_then_edit)

    message = rejected(store, site, path, "customers")

    assert "the file changed while it was being imported; nothing was stored" in message
    assert count(store, customers) == 0


def test_an_unknown_kind_is_refused(store: Store, site: Site, tmp_path: Path) -> None:
    path = write(tmp_path / "x.csv", "id\n1\n")

    assert "the kinds are customers, vehicles, events" in rejected(store, site, path, "people")


# ---------------------------------------------------------------- the CLI


def run_cli(*args: str) -> Result:
    from crmd.cli.commands import main  # here, so the tests above do not depend on the whole CLI

    return CliRunner().invoke(main, list(args))


def test_cli_imports_a_file(store: Store, tmp_path: Path) -> None:
    path = write(tmp_path / "customers.csv", CUSTOMERS, bom=True)

    result = run_cli("--site", str(tmp_path), "import", str(path), "--kind", "customers")

    assert result.exit_code == 0, result.output
    assert result.stdout == f"{path}: 3 added, 0 changed, 0 unchanged\n"
    assert count(store, customers) == 3


def test_cli_refuses_a_bad_file(store: Store, tmp_path: Path) -> None:
    path = write(
        tmp_path / "customers.csv",
        "id,name,birthday\nC001,王伟,\nC002,李芳,\nC003,张娜,1990-13-01\n",
    )

    result = run_cli("--site", str(tmp_path), "import", str(path), "--kind", "customers")

    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.splitlines()[0] == (
        f"crmd: {path}:row 4: birthday '1990-13-01' is not a date; write YYYY-MM-DD"
    )
    assert count(store, customers) == 0


# ---------------------------------------------------------------- declared fields


def test_an_event_missing_a_field_its_type_requires_is_refused(
    store: Store, site: Site, tmp_path: Path
) -> None:
    path = write(
        tmp_path / "events.csv",
        "id,type,at,kind\n"
        "E1,weather.alert,2026-11-20 09:30,暴雨\n"
        "E2,weather.alert,2026-11-20 10:30,\n"
        "E3,report.submitted,2026-11-20 11:30,\n",
    )

    assert rejected(store, site, path, "events").splitlines() == [
        f"{path}:row 3: kind is empty; every weather.alert event needs it (add a column "
        "'kind' and fill it in on this row)",
        f"{path}:row 4: report is empty; every report.submitted event needs it (add a column "
        "'report' and fill it in on this row)",
        f"{path}: 2 problems; nothing was imported. Fix the file and import it again.",
    ]
    assert count(store, events) == 0


def test_a_site_s_required_fields_are_required_too(tmp_path: Path, site_store: str | None) -> None:
    (tmp_path / "site.yaml").write_text(
        "store: sqlite:///crmd.db\nevent_types: {complaint.escalated: {required: [level]}}\n",
        encoding="utf-8",
    )
    site = load_site(tmp_path)
    store = Store.open(site_store or f"sqlite:///{tmp_path}/crmd.db")
    try:
        path = write(tmp_path / "events.csv", "id,type,at\nE1,complaint.escalated,2026-11-20\n")
        assert rejected(store, site, path, "events").startswith(
            f"{path}:row 2: level is empty; every complaint.escalated event needs it"
        )
        write(path, "id,type,at,level\nE1,complaint.escalated,2026-11-20,high\n")
        assert counts(import_csv(store, site, path, "events", NOW)) == (1, 0, 0)
    finally:
        store.dispose()


def test_columns_no_rule_can_name_are_stored_with_one_warning_per_file(
    store: Store, tmp_path: Path
) -> None:
    path = write(
        tmp_path / "events.csv",
        "id,type,at,knid,kind,mileage\n"
        "E1,weather.alert,2026-11-20 09:30,x,暴雨,\n"
        "E2,service.completed,2026-11-20 09:30,y,maintenance,12000\n"
        "E3,member.joined,2026-11-20 09:30,,,\n",
    )

    result = run_cli("--site", str(tmp_path), "import", str(path), "--kind", "events")

    assert result.exit_code == 0, result.output
    assert result.stdout == f"{path}: 3 added, 0 changed, 0 unchanged\n"
    # Empty cells are no values: member.joined's row names no column.
    assert result.stderr.splitlines() == [
        f"warning: {path}: columns a rule cannot name: 'knid' (no field of "
        "service.completed, weather.alert). They are stored with the events; to use them in "
        "rules, declare them under event_types: in site.yaml, or check the header for a "
        "misspelling"
    ]
    assert row_of(store, events, "E1").data == {"knid": "x", "kind": "暴雨"}


def test_customer_columns_no_rule_can_name_are_warned_of(store: Store, tmp_path: Path) -> None:
    path = write(tmp_path / "customers.csv", CUSTOMERS)  # 来源: an attribute nobody declared
    result = run_cli("--site", str(tmp_path), "import", str(path), "--kind", "customers")
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == [
        f"warning: {path}: columns a rule cannot name: '来源' (no field of customer). They "
        "are stored with the customers; to use them in rules, declare them under "
        "customer_fields: in site.yaml, or check the header for a misspelling"
    ]
    (tmp_path / "site.yaml").write_text(
        "store: sqlite:///crmd.db\ncustomer_fields: [来源]\n", encoding="utf-8"
    )
    again = run_cli("--site", str(tmp_path), "import", str(path), "--kind", "customers")
    assert again.exit_code == 0, again.output
    assert again.stderr == ""
