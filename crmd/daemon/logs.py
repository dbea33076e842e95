"""Log set-up for the journal: one line per record, personal data masked."""

from __future__ import annotations

import logging
import re
import sys
from contextvars import ContextVar

# The site whose work the current thread does, when one process runs several sites
# (`crmd run --sites`); its log lines say which, as "[site] ".
current_site: ContextVar[str] = ContextVar("current_site", default="")

# Phone numbers (7+ digits, optionally +country and separators) and e-mail addresses.
_EMAIL = re.compile(r"([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*@([A-Za-z0-9.-]+\.[A-Za-z]{2,})")
# A number stands alone when no ASCII letter, digit or `_.:-` touches it: a Chinese
# character may (`电话13800138000`, `13800138000号`, `张三13800138000`), since Chinese
# is written without spaces; `\w` would count the characters as part of a word and leave
# such numbers whole. Times (`09:00:00`), versions and ids like `C1380013800` stay as they are.
_PHONE = re.compile(r"(?<![A-Za-z0-9_.:-])(\+?\d[\d -]{5,}\d)(\d{2})(?![A-Za-z0-9_:])")


_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def mask(text: str) -> str:
    """Mask phone numbers and e-mail addresses: 138****8000 style, a***@example.com."""
    text = _EMAIL.sub(r"\1***@\2", text)

    def phone(m: re.Match[str]) -> str:
        if _DATE.fullmatch(m.group(0)):
            return m.group(0)
        digits = re.sub(r"\D", "", m.group(0))
        if len(digits) < 7:
            return m.group(0)
        return digits[:3] + "*" * (len(digits) - 7) + digits[-4:]

    return _PHONE.sub(phone, text)


class MaskingFormatter(logging.Formatter):
    """A formatter whose output never shows a whole phone number or e-mail address."""

    def format(self, record: logging.LogRecord) -> str:
        site = current_site.get()
        text = super().format(record)
        if site:
            head, sep, message = text.partition(": ")
            text = f"{head}{sep}[{site}] {message}" if sep else f"[{site}] {text}"
        return mask(text)


def setup_logging(level: str) -> None:
    """Log to stderr (the journal under systemd) at `level`, masked."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(MaskingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        if isinstance(old.formatter, MaskingFormatter):
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
