"""Phone numbers as staff type them, normalised to E.164 or refused with the reason."""

from __future__ import annotations

import pytest

from crmd.phones import InvalidPhone, mask_address, mask_phone, normalise_phone


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
