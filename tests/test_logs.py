"""The log masker: no whole phone number or e-mail address reaches the journal."""

from __future__ import annotations

import logging

import pytest

from crmd.daemon.logs import MaskingFormatter, mask


@pytest.mark.parametrize(
    ("line", "masked"),
    [
        ("电话13800138000", "电话138****8000"),
        ("13800138000号", "138****8000号"),
        ("张三13800138000", "张三138****8000"),
        ("客户张三电话13800138000已拨打", "客户张三电话138****8000已拨打"),
        ("手机：13800138000，", "手机：138****8000，"),
        ("（13800138000）", "（138****8000）"),
        ("电话+8613800138000", "电话861******8000"),
        ("座机020-88886666转", "座机020****6666转"),
        ("张三１３８００１３８０００", "张三１３８****８０００"),  # full-width digits
        ("邮箱zhang.san@example.com", "邮箱z***@example.com"),
    ],
)
def test_numbers_next_to_chinese_text_are_masked(line: str, masked: str) -> None:
    assert mask(line) == masked


@pytest.mark.parametrize(
    "kept",
    [
        "task 12345 due 2026-11-24 09:00:00",
        "customer C13800138000 has no phone",  # an id, not a number on its own
        "rule v1.2.3456789 loaded",
        "fire at 2026-11-23T09:00:00+08:00",
    ],
)
def test_ids_times_and_versions_stay_readable(kept: str) -> None:
    assert mask(kept) == kept


def test_a_log_record_next_to_chinese_text_is_masked_when_formatted() -> None:
    record = logging.LogRecord(
        "crmd", logging.INFO, __file__, 1, "回访%s电话%s号", ("张三", "13800138000"), None
    )
    text = MaskingFormatter("%(message)s").format(record)
    assert text == "回访张三电话138****8000号"
    assert "13800138000" not in text
