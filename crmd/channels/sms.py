"""The `sms` channel: text messages through Twilio's REST API (the twilio library).

Numbers are normalised to E.164 first (crmd/intake/phones.py). After an unknown outcome (a time-out
once the request was out, a dropped connection, a crash) the channel lists the recent
messages to the number and matches the body: Twilio keeps no idempotency key for a message,
and its DateSent filter misses messages still queued at Twilio, so the list is by recipient
and creation time.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime, time, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar

import requests
from sqlalchemy import select
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client
from urllib3.exceptions import ConnectTimeoutError, MaxRetryError

from crmd.channels.base import (
    BaseChannel,
    DeliveryError,
    Message,
    NeedsReview,
    OutcomeUnknown,
    PermanentFailure,
    QuietHours,
    Receipt,
    Runtime,
    SecretSpec,
    TemporaryFailure,
)
from crmd.channels.secrets import redact
from crmd.intake.phones import InvalidPhone, mask_phone, normalise_phone
from crmd.site import Site
from crmd.store.tables import outbox

# Twilio's own client logs each request URL, and the URL holds the account SID.
logging.getLogger("twilio.http_client").setLevel(logging.WARNING)

# How far before the claim a message found at Twilio may have been created (clock skew).
SKEW = timedelta(minutes=10)


class SmsChannel(BaseChannel):
    """Sends through Twilio from a number (`from`) or a messaging service."""

    options: ClassVar[Mapping[str, Any]] = {
        "from": {"type": "string", "description": "the sending number in E.164"},
        "messaging_service": {"type": "string", "description": "a Messaging Service SID"},
        "api_url": {"type": "string", "description": "the Twilio API base URL"},
        "timeout_seconds": {"type": "number", "minimum": 1},
    }
    secrets: ClassVar[tuple[SecretSpec, ...]] = (
        SecretSpec(
            "account_sid", "CRMD_TWILIO_ACCOUNT_SID", "twilio_account_sid", "the Twilio account SID"
        ),
        SecretSpec(
            "auth_token", "CRMD_TWILIO_AUTH_TOKEN", "twilio_auth_token", "the Twilio auth token"
        ),
    )
    # P33: texts to customers belong in daytime hours.
    default_quiet_hours: ClassVar[QuietHours | None] = QuietHours(time(21, 0), time(8, 0))

    @classmethod
    def option_problems(cls, options: Mapping[str, Any], site: Site) -> list[tuple[str, str]]:
        if "from" not in options and "messaging_service" not in options:
            return [("from", "an sms channel needs 'from' (a number) or 'messaging_service'")]
        if "from" in options:
            try:
                normalise_phone(options["from"])
            except InvalidPhone as exc:
                return [("from", f"from: {exc}")]
        return []

    def __init__(self, runtime: Runtime) -> None:
        super().__init__(runtime)
        options = self.settings.options
        self._secrets = list(runtime.secrets.values())
        # What the last answer's Retry-After said (the twilio library's errors drop headers).
        self._retry_after: str | None = None
        http = TwilioHttpClient(
            timeout=float(options.get("timeout_seconds", 15)),
            request_hooks={"response": [self._note_answer]},
        )
        self.client = Client(
            runtime.secrets["account_sid"], runtime.secrets["auth_token"], http_client=http
        )
        self.client.api.base_url = str(options.get("api_url", "https://api.twilio.com"))
        self._from: dict[str, str] = (
            {"from_": normalise_phone(options["from"])}
            if "from" in options
            else {"messaging_service_sid": str(options["messaging_service"])}
        )

    def address(self, recipient: str) -> str:
        try:
            return normalise_phone(recipient)
        except InvalidPhone as exc:
            raise PermanentFailure(f"invalid phone number: {exc}") from None

    def send(self, message: Message) -> Receipt:
        try:
            sent = self.client.messages.create(
                to=message.recipient, body=message.body, **self._from
            )
        except TwilioRestException as exc:
            raise self._refused(exc, message.at) from None
        except requests.RequestException as exc:
            raise self._connection(exc, message) from None
        return Receipt(str(sent.sid))

    def reconcile(self, message: Message, claimed_at: datetime) -> Receipt | None:
        sender = {"from_": self._from["from_"]} if "from_" in self._from else {}
        try:
            recent = self.client.messages.list(to=message.recipient, limit=100, **sender)
        except TwilioRestException as exc:
            error = self._refused(exc, message.at)
            raise TemporaryFailure(f"cannot list messages at Twilio: {error}") from None
        except (requests.RequestException, TwilioException) as exc:
            raise TemporaryFailure(
                f"cannot list messages at Twilio: {self._clean(str(exc))}"
            ) from None
        candidates = [
            str(m.sid)
            for m in recent
            # A trial account prefixes the text; the rest must be ours word for word.
            if (m.body or "").endswith(message.body)
            and str(m.direction or "").startswith("outbound")
            and (m.date_created is None or m.date_created >= claimed_at - SKEW)
        ]
        if not candidates:
            return None
        # The same text to the same number from another message (two rules, say) is not ours.
        with self.runtime.store.read() as conn:
            taken = set(
                conn.execute(
                    select(outbox.c.provider_ref).where(outbox.c.provider_ref.in_(candidates))
                ).scalars()
            )
        mine = [sid for sid in candidates if sid not in taken]
        return Receipt(mine[-1]) if mine else None

    def _clean(self, text: str) -> str:
        return redact(text, self._secrets)

    def _note_answer(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        self._retry_after = response.headers.get("Retry-After")

    def _refused(self, exc: TwilioRestException, now: datetime) -> DeliveryError:
        """What an error answer from Twilio means for the message."""
        reason = self._clean(f"Twilio error {exc.code or exc.status}: {exc.msg}")
        if exc.status == 429 or exc.status >= 500:
            return TemporaryFailure(reason, retry_after=retry_after(self._retry_after, now))
        if exc.status in (401, 403):
            return NeedsReview(f"{reason} (check the account SID and auth token)")
        return PermanentFailure(reason)

    def _connection(self, exc: requests.RequestException, message: Message) -> DeliveryError:
        """A failure below HTTP: before connecting it is safe to retry; after, unknown."""
        cause = exc.args[0] if exc.args else None
        never_connected = isinstance(exc, requests.ConnectTimeout) or (
            isinstance(cause, MaxRetryError) and isinstance(cause.reason, ConnectTimeoutError)
        )
        text = self._clean(f"{type(exc).__name__}: {exc}")
        if never_connected:
            return TemporaryFailure(f"cannot reach Twilio: {text}")
        return OutcomeUnknown(
            f"no answer from Twilio for the text to {mask_phone(message.recipient)}: {text}"
        )


def retry_after(header: str | None, now: datetime) -> timedelta | None:
    """The wait an HTTP Retry-After header asks for: seconds, or a date (RFC 9110)."""
    if not header:
        return None
    header = header.strip()
    if header.isdigit():
        return timedelta(seconds=int(header))
    try:
        when = parsedate_to_datetime(header)
    except (TypeError, ValueError):
        return None  # unreadable: our own backoff decides
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(timedelta(0), when - now)
