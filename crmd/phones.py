"""Phone numbers: validated and written one way (E.164), and masked for logs.

Staff type numbers the way people do: `138 0013 8000`, `+86 138-0013-8000`, `008613800138000`,
full-width digits from a Chinese input method. All of them mean `+8613800138000`.
"""

from __future__ import annotations

import re
import unicodedata

from crmd.errors import CrmdError

_CHINA_MOBILE = re.compile(r"1[3-9]\d{9}")
_E164 = re.compile(r"\+[1-9]\d{6,14}")
_SEPARATORS = re.compile(r"[\s\-().·]")


class InvalidPhone(CrmdError):
    """A phone number that no SMS can be sent to."""


def normalise_phone(text: str) -> str:
    """The number in E.164 (`+8613800138000`); raise InvalidPhone saying what is wrong."""
    shown = mask_phone(text)
    number = _SEPARATORS.sub("", unicodedata.normalize("NFKC", text or ""))
    if not number:
        raise InvalidPhone("no phone number")
    if number.startswith("00"):
        number = "+" + number[2:]
    if _CHINA_MOBILE.fullmatch(number):
        return "+86" + number
    if number.startswith("86") and _CHINA_MOBILE.fullmatch(number[2:]):
        return "+" + number
    if not number.startswith("+"):
        raise InvalidPhone(
            f"{shown} is not a Chinese mobile number (11 digits starting 13-19) nor an "
            f"international number; write it like +8613800138000"
        )
    if not _E164.fullmatch(number):
        raise InvalidPhone(f"{shown} is not an E.164 number (+, country code, up to 15 digits)")
    if number.startswith("+86") and not _CHINA_MOBILE.fullmatch(number[3:]):
        raise InvalidPhone(f"{shown} is not a Chinese mobile number; SMS needs a mobile")
    return number


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
