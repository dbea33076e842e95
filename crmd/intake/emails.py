"""E-mail addresses: the one check of what looks like an address, for imports and channels."""

from __future__ import annotations

import re

from crmd.errors import CrmdError

# One address: something, @, a domain with a dot; no spaces, commas or angle brackets (those
# separate addresses or wrap them). Whether it reaches anyone only the server can tell.
ADDRESS = re.compile(r"[^@\s,<>]+@[^@\s,<>]+\.[^@\s,<>]+")


class InvalidEmail(CrmdError):
    """Text that is no e-mail address."""


def is_address(text: str) -> bool:
    return ADDRESS.fullmatch(text) is not None


def customer_email(text: str) -> str:
    """A customer's address as stored (trimmed); empty stays empty. Raise InvalidEmail."""
    address = text.strip()
    if address and not is_address(address):
        raise InvalidEmail(
            f"email {address!r} is not an e-mail address; write one address like "
            f"zhang.san@example.com, or leave the cell empty"
        )
    return address
