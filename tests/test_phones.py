"""Phone numbers as staff type them, normalised to E.164 or refused with the reason."""

from __future__ import annotations

import pytest

from crmd.intake.phones import (
    InvalidPhone,
    customer_phone,
    mask_address,
    mask_phone,
    normalise_phone,
)


@pytest.mark.parametrize(
    "typed",
    [
        "13800138000",
        "138 0013 8000",
        "138-0013-8000",
        "+86 138 0013 8000",
        "+86-138-0013-8000",
        "(+86) 13800138000",
        "8613800138000",
        "008613800138000",
        "１３８００１３８０００",  # full-width digits from a Chinese input method
    ],
)
def test_chinese_mobile_numbers_become_e164(typed: str) -> None:
    assert normalise_phone(typed) == "+8613800138000"


@pytest.mark.parametrize("typed", ["+14155550100", "+44 20 7946 0958", "0014155550100"])
def test_international_numbers_stay_e164(typed: str) -> None:
    assert normalise_phone(typed).startswith("+")
    assert normalise_phone(typed) == normalise_phone(normalise_phone(typed))


@pytest.mark.parametrize(
    ("typed", "why"),
    [
        ("", "no phone number"),
        ("12800138000", "not a Chinese mobile number"),  # 12x is no mobile prefix
        ("1380013800", "not a Chinese mobile number"),  # 10 digits
        ("010-12345678", "not a Chinese mobile number"),  # a landline cannot take SMS
        ("+861012345678", "SMS needs a mobile"),
        ("+0123456789", "not an E.164 number"),
        ("+1234567890123456", "not an E.164 number"),  # 16 digits
        ("call me", "not a Chinese mobile number"),
    ],
)
def test_numbers_that_take_no_sms_are_refused(typed: str, why: str) -> None:
    with pytest.raises(InvalidPhone, match=why):
        normalise_phone(typed)


def test_masks_hide_the_middle() -> None:
    assert mask_phone("+8613800138000") == "+86138****8000"
    assert mask_phone("13800138000") == "138****8000"
    assert mask_address("zhang.san@example.com") == "z***@example.com"
    assert "0013" not in mask_address("+8613800138000")


@pytest.mark.parametrize(
    "typed",
    [
        "+4420794",  # looks like E.164, but no British number is this short
        "+1 000 555 0100",  # no North American area code starts with 0
        "+86 128 0013 8000",  # no Chinese mobile prefix 128
    ],
)
def test_numbers_no_country_has_are_refused(typed: str) -> None:
    with pytest.raises(InvalidPhone):
        normalise_phone(typed)


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("138 0013 8000", "+8613800138000"),
        ("0086 139 0013 9000", "+8613900139000"),
        ("+1 415 555 0100", "+14155550100"),  # a number that may be a mobile
        ("020-8888 6666", "020-88886666"),  # a landline, as staff dial it
        ("(0755) 8888 1234", "(0755)88881234"),
        ("", ""),
    ],
)
def test_a_customer_phone_is_a_mobile_in_e164_or_a_landline_as_written(
    typed: str, stored: str
) -> None:
    assert customer_phone(typed) == stored


@pytest.mark.parametrize("typed", ["8888 6666", "12800138000", "call me", "138001380001"])
def test_a_customer_phone_that_is_no_number_is_refused(typed: str) -> None:
    with pytest.raises(InvalidPhone, match="not a valid phone number"):
        customer_phone(typed)
