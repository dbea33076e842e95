"""Phone numbers: validated (Google's libphonenumber, through `phonenumbers`), written one
way, and masked for logs.

Staff type numbers the way people do: `138 0013 8000`, `+86 138-0013-8000`, `008613800138000`,
full-width digits from a Chinese input method. All of them mean `+8613800138000`. A number
without a country code is read as a Chinese one, so a landline needs its area code
(`020-8888 6666`, `0755-8888 1234`).
"""

from __future__ import annotations

import unicodedata

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumber, PhoneNumberFormat, PhoneNumberType

from crmd.errors import CrmdError

# Numbers without a country code are the dealership's: China's.
HOME_REGION = "CN"
# Kinds of number that take a text message; elsewhere than China a number may be either.
_MOBILE = frozenset({PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE})


class InvalidPhone(CrmdError):
    """A phone number that is no phone number, or that no SMS can be sent to."""


def _parse(text: str) -> tuple[str, PhoneNumber | None]:
    """The number as typed (NFKC, trimmed) and as parsed, or None if it is none at all."""
    typed = unicodedata.normalize("NFKC", text or "").strip()
    try:
        number = phonenumbers.parse(typed, HOME_REGION)
    except NumberParseException:
        return typed, None
    return typed, number


def _e164(number: PhoneNumber) -> str:
    return phonenumbers.format_number(number, PhoneNumberFormat.E164)


def normalise_phone(text: str) -> str:
    """The number in E.164 (`+8613800138000`) for a text message; raise InvalidPhone saying
    what is wrong. A Chinese number must be a mobile: SMS reaches no landline."""
    typed, number = _parse(text)
    shown = mask_phone(typed)
    if not typed:
        raise InvalidPhone("no phone number")
    international = typed.startswith("+") or typed.startswith("00")
    if number is None or not phonenumbers.is_valid_number(number):
        if not international:
            raise InvalidPhone(
                f"{shown} is not a Chinese mobile number (11 digits starting 13-19) nor an "
                f"international number; write it like +8613800138000"
            )
        if number is not None and number.country_code == 86:
            raise InvalidPhone(f"{shown} is not a Chinese mobile number; SMS needs a mobile")
        raise InvalidPhone(
            f"{shown} is not an E.164 number (+, country code, up to 15 digits) of any country"
        )
    if number.country_code == 86 and phonenumbers.number_type(number) != PhoneNumberType.MOBILE:
        raise InvalidPhone(
            f"{shown} is a landline or service number, not a Chinese mobile number; "
            f"SMS needs a mobile"
        )
    return _e164(number)


def customer_phone(text: str) -> str:
    """A customer's number as crmd stores it: a mobile in E.164 (`+8613800138000`), so that
    texts and look-ups see one spelling; a landline or service number kept as written (less
    spaces), the way staff dial it. Empty stays empty. Raise InvalidPhone if it is no number."""
    typed, number = _parse(text)
    if not typed:
        return ""
    if number is None or not phonenumbers.is_valid_number(number):
        raise InvalidPhone(
            f"phone {mask_phone(typed)} is not a valid phone number; write a mobile like "
            f"13800138000 or +8613800138000, or a landline with its area code like "
            f"020-8888 6666"
        )
    if phonenumbers.number_type(number) in _MOBILE:
        return _e164(number)
    return "".join(typed.split())


def mask_phone(text: str) -> str:
    """The number with its middle hidden (`+86138****8000`), for logs and messages."""
    text = text or ""
    if len(text) <= 4:
        return "*" * len(text)
    keep_end = 4
    keep_start = max(0, min(len(text) - keep_end - 4, 6))
    return text[:keep_start] + "*" * (len(text) - keep_start - keep_end) + text[-keep_end:]


def mask_address(text: str) -> str:
    """A recipient masked for logs: a phone number or an e-mail address (`z***@example.com`)."""
    if "@" in text:
        local, _, domain = text.partition("@")
        return f"{local[:1]}***@{domain}"
    return mask_phone(text)
