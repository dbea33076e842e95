"""Channels deliver outbox messages: the protocol, the registry, settings and built-in types.

Built-in types, registered through the `crmd.channels` entry-point group like any plugin:
`task` (a staff task in the store), `sms` (Twilio), `email` (yagmail), `log`.
"""

from __future__ import annotations

from crmd.channels.base import (
    BaseChannel,
    Channel,
    DeliveryError,
    Message,
    NeedsReview,
    OutcomeUnknown,
    PermanentFailure,
    Receipt,
    Runtime,
    SecretSpec,
    TemporaryFailure,
)

__all__ = [
    "BaseChannel",
    "Channel",
    "DeliveryError",
    "Message",
    "NeedsReview",
    "OutcomeUnknown",
    "PermanentFailure",
    "Receipt",
    "Runtime",
    "SecretSpec",
    "TemporaryFailure",
]
