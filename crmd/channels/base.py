"""What a channel is: the message it gets, the receipt it returns, and how it says it failed.

Also the settings a channel is made with (quiet hours, rate limit, retry policy), as values;
reading them from `channels/NAME.yaml` is crmd/channels/settings.py.

A channel delivers one outbox message at a time. The outbox sender (crmd/channels/sender.py)
decides when, checks quiet hours, rate limits and opt-out, and records the outcome; a channel only
talks to its provider and says, by what it raises, what the sender should do next.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, tzinfo
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from crmd.errors import CrmdError

# The states of a message in the outbox (crmd/channels/outbox.py moves it between them).
MESSAGE_STATUSES = ("queued", "sending", "sent", "held", "dead", "cancelled")

if TYPE_CHECKING:
    from crmd.site import Site
    from crmd.store.database import Store


@dataclass(frozen=True)
class Message:
    """One outbox message as a channel sees it; `recipient` is already normalised, `at` is
    the sender's `now`, and `attempts` counts this one."""

    id: int
    channel: str
    recipient: str
    subject: str
    body: str
    rule_id: str
    fire_id: int
    at: datetime
    customer_id: str | None = None
    attempts: int = 0


@dataclass(frozen=True)
class Receipt:
    """The provider took the message; `ref` is its id for it (a Twilio SID, a Message-ID)."""

    ref: str = ""


class DeliveryError(CrmdError):
    """A send that did not succeed; the subclass tells the sender what to do next."""


class TemporaryFailure(DeliveryError):
    """Nothing was delivered and trying later may work (time-outs connecting, 5xx, 429).

    `retry_after` is how long the provider asked us to wait (an HTTP Retry-After), if it
    said; the sender waits at least that long, and at least its own backoff.
    """

    def __init__(self, reason: str, *, retry_after: timedelta | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class PermanentFailure(DeliveryError):
    """This message can never be delivered as it is (an invalid number, most 4xx): dead."""


class NeedsReview(DeliveryError):
    """A person must look before anything more happens (credentials refused, say): held."""


class OutcomeUnknown(DeliveryError):
    """The request went out but no answer came back: the provider may have the message.

    The sender never sends such a message again blindly; it asks the channel to reconcile.
    """


@dataclass(frozen=True)
class SecretSpec:
    """A secret a channel type needs, read from the environment or a systemd credential."""

    key: str  # the name the channel asks for, e.g. "auth_token"
    env: str  # environment variable, e.g. CRMD_TWILIO_AUTH_TOKEN
    credential: str  # file name in $CREDENTIALS_DIRECTORY, e.g. twilio_auth_token
    what: str  # in words, for messages: "the Twilio auth token"
    required: bool = True


@dataclass(frozen=True)
class QuietHours:
    """Local hours in which customers get no messages; `start` may be after `end` (night)."""

    start: time
    end: time

    def active(self, local: time) -> bool:
        if self.start <= self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end

    def ends_after(self, now: datetime, tz: tzinfo) -> datetime:
        """The first end of quiet hours after `now`, as an aware datetime."""
        local = now.astimezone(tz)
        day: date = local.date()
        end = datetime.combine(day, self.end, tzinfo=tz)
        if end <= local:
            end = datetime.combine(day + timedelta(days=1), self.end, tzinfo=tz)
        return end


@dataclass(frozen=True)
class RateLimit:
    count: int
    per: timedelta


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter: attempt n waits first * 2**(n-1), capped, times
    a random factor in [0.5, 1] so that a burst of failures does not retry in lockstep."""

    attempts: int = 8
    first_delay: timedelta = timedelta(minutes=1)
    max_delay: timedelta = timedelta(hours=2)

    def delay(self, attempt: int, rng: random.Random) -> timedelta:
        base = min(self.max_delay, self.first_delay * (2 ** max(0, attempt - 1)))
        jittered: timedelta = base * rng.uniform(0.5, 1.0)
        return jittered


@dataclass(frozen=True)
class ChannelSettings:
    """One channel as its file configures it."""

    name: str
    type: str
    file: str = ""
    quiet_hours: QuietHours | None = None
    rate_limit: RateLimit | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    # How long a message may stay "sending" before it counts as interrupted and is
    # reconciled with the provider; longer than any send takes, and than the provider's lag.
    reconcile_after: timedelta = timedelta(minutes=5)
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Runtime:
    """What a channel gets when it is made: its settings, its secrets, the site and store."""

    settings: ChannelSettings
    site: Site
    store: Store
    secrets: Mapping[str, str] = field(default_factory=dict)


class Channel(Protocol):
    """A way to deliver messages."""

    def address(self, recipient: str) -> str:
        """The recipient as the provider wants it; raise PermanentFailure if it is invalid."""
        ...

    def send(self, message: Message) -> Receipt:
        """Deliver one message; raise a DeliveryError subclass when it does not go out."""
        ...

    def reconcile(self, message: Message, claimed_at: datetime) -> Receipt | None:
        """After an unknown outcome: the receipt if the provider has the message, None if it
        surely does not; raise NeedsReview when the provider cannot tell."""
        ...

    def close(self) -> None: ...


class BaseChannel:
    """A base for channel types; an entry point in `crmd.channels` names a subclass.

    Class attributes describe the type to crmd before any instance exists: the JSON Schema
    properties of its own settings keys, the secrets it needs, and its default quiet hours.
    """

    options: ClassVar[Mapping[str, Any]] = {}
    required_options: ClassVar[tuple[str, ...]] = ()
    secrets: ClassVar[tuple[SecretSpec, ...]] = ()
    default_quiet_hours: ClassVar[QuietHours | None] = None

    @classmethod
    def secret_specs(cls, options: Mapping[str, Any]) -> tuple[SecretSpec, ...]:
        """The secrets this type needs with these settings."""
        return cls.secrets

    @classmethod
    def option_problems(cls, options: Mapping[str, Any], site: Site) -> list[tuple[str, str]]:
        """(key, message) for each setting that has the right shape but is still wrong."""
        return []

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.settings = runtime.settings

    def address(self, recipient: str) -> str:
        return recipient

    def send(self, message: Message) -> Receipt:  # pragma: no cover - every type overrides
        raise NotImplementedError

    def reconcile(self, message: Message, claimed_at: datetime) -> Receipt | None:
        raise NeedsReview(
            f"channel type {self.settings.type!r} cannot ask its provider whether the "
            f"message arrived"
        )

    def close(self) -> None:
        return None
