"""The outbox sender: delivers queued messages through their channels, each exactly once.

Each message goes claim -> send -> mark. The claim commits status "sending" before the
provider is called, so a crash at any instant leaves either a queued message (sent later),
a sent one (done), or a "sending" one whose outcome is unknown. Those are never sent again
blindly: once their claim is older than the channel's `reconcile_after`, the channel asks its
provider (Twilio lists its messages) and the message is marked sent, queued again because
the provider surely has none, or held for a person to review.

Age alone does not tell an interrupted send from a slow one, and a live sender's message
must never be reconciled: asked while its request is on the way, the provider has nothing
yet, the message is queued again and the customer gets it twice. So a sender holds the
message's lock (crmd.store.sharing.MessageClaims) from before its claim commits until its
outcome is recorded, and a sender reconciles only a message whose lock it gets: one whose
sender died (PostgreSQL frees the lock with the dead sender's connection), or whose send
ended with an unknown outcome. The claim's time is when it was made (the pass's `now` plus
the time the pass has run, to the second), so `reconcile_after` counts from the send, not
from the start of a long pass.

At claim time the sender also protects customers: a customer who opted out gets nothing,
quiet hours move the message to the morning (site time), a rate limit spreads a burst, and
an invalid number or address goes to the dead letters with the reason.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row

from crmd.channels import outbox as ox
from crmd.channels.base import (
    Channel,
    ChannelSettings,
    DeliveryError,
    Message,
    NeedsReview,
    OutcomeUnknown,
    PermanentFailure,
    Runtime,
    TemporaryFailure,
)
from crmd.channels.secrets import redact
from crmd.channels.settings import ChannelSet, load_channels
from crmd.intake.phones import mask_address
from crmd.site import Site
from crmd.store.database import Store
from crmd.store.sharing import MessageClaims, lock_channel_for_transaction

logger = logging.getLogger(__name__)

REVIEW_HINT = "then `crmd outbox retry {id}` to send it again or `crmd outbox cancel {id}`"


@dataclass
class SendReport:
    """What one pass of the sender did, by outcome."""

    sent: int = 0
    retrying: int = 0
    dead: int = 0
    held: int = 0
    cancelled: int = 0
    deferred: int = 0  # quiet hours
    unknown: int = 0  # no answer; reconciled later
    reconciled: int = 0

    def __str__(self) -> str:
        done = [f"{getattr(self, f.name)} {f.name}" for f in fields(self) if getattr(self, f.name)]
        return ", ".join(done) or "nothing to send"


@dataclass(frozen=True)
class _Claimed:
    message: Message
    channel: Channel
    settings: ChannelSettings
    token: str


class Sender:
    """Sends what is due at `now`: `Sender(site, store, channels).run_once(now)`."""

    def __init__(
        self,
        site: Site,
        store: Store,
        channels: ChannelSet,
        *,
        rng: random.Random | None = None,
        batch: int = 200,
    ) -> None:
        self.site = site
        self.store = store
        self.channels = channels
        self.rng = rng or random.Random()
        self.batch = batch
        self._made: dict[str, Channel] = {}
        self._broken: dict[str, str] = {}
        self._secrets = channels.all_secrets()
        self.claims = MessageClaims(store)
        # Measures how long a pass has run (a test may step it by hand).
        self.monotonic: Callable[[], float] = time.monotonic
        self._pass_started = 0.0

    @classmethod
    def for_site(cls, site: Site, store: Store, env: Mapping[str, str] | None = None) -> Sender:
        """A sender for the site's channels/*.yaml; RuleSetError if a file is wrong."""
        return cls(site, store, load_channels(site, env))

    def close(self) -> None:
        for channel in self._made.values():
            channel.close()
        self._made.clear()

    # ------------------------------------------------------------------ channels

    def channel(self, name: str) -> tuple[Channel | None, str]:
        """The channel called `name`, or None and why it cannot send."""
        if name in self._made:
            return self._made[name], ""
        if name not in self.channels.settings:
            return None, (
                f"no channel '{name}' is configured: add channels/{name}.yaml "
                f"(see docs/channels.md)"
            )
        if name in self.channels.not_ready:
            return None, f"channel {name} is not ready: {self.channels.not_ready[name]}"
        if name not in self._broken:
            runtime = Runtime(
                self.channels.settings[name], self.site, self.store, self.channels.secrets[name]
            )
            try:
                self._made[name] = self.channels.types[name](runtime)
                return self._made[name], ""
            except Exception as exc:  # a plugin that cannot start must not stop the others
                self._broken[name] = self._clean(f"{type(exc).__name__}: {exc}")
                logger.error("channel %s cannot start: %s", name, self._broken[name])
        return None, f"channel {name} cannot start: {self._broken[name]}"

    def _clean(self, text: str) -> str:
        return redact(text, self._secrets)

    # ------------------------------------------------------------------ one pass

    def run_once(self, now: datetime) -> SendReport:
        """Reconcile interrupted sends, then send what is due at `now` (up to `batch`)."""
        report = SendReport()
        self._pass_started = self.monotonic()
        skip: set[str] = set()  # channels at their rate limit for this pass
        busy: set[int] = set()  # messages another sender is settling right now
        with self.claims.session():
            self._reconcile(now, report)
            for _ in range(self.batch):
                claimed = self._claim_next(now, skip, busy, report)
                if claimed is None:
                    break
                if isinstance(claimed, _Claimed):
                    self._deliver(claimed, now, report)
        if report.sent or report.dead or report.held or report.unknown or report.retrying:
            logger.info("outbox at %s: %s", now.isoformat(), report)
        return report

    def _clock(self, now: datetime) -> datetime:
        """The time on the clock of the pass at `now`: `now` plus the whole seconds it has
        run. (Whole seconds: the first claims of a pass are made at its `now` exactly.)"""
        return now + timedelta(seconds=int(self.monotonic() - self._pass_started))

    def _message(self, row: Row[Any], recipient: str, now: datetime) -> Message:
        return Message(
            id=row.id,
            channel=row.channel,
            recipient=recipient,
            subject=row.subject,
            body=row.body,
            rule_id=row.rule_id,
            fire_id=row.fire_id,
            at=now,
            customer_id=row.customer_id,
            attempts=row.attempts,
        )

    def _claim_next(
        self, now: datetime, skip: set[str], busy: set[int], report: SendReport
    ) -> _Claimed | bool | None:
        """Claim the next due message: a claim to send, True if it was settled without
        sending (held, cancelled, dead, deferred) or left for a later pass (rate limit,
        another sender settling it), None when nothing more is due.

        The claim is durable: once the provider may have the message, the store knows it
        was being sent, even after a power cut, so it is reconciled, never sent again. The
        message's lock is taken before the claim commits, so no instant shows it "sending"
        with its lock free while this sender lives.
        """
        try:
            return self._claim_locked(now, skip, busy, report)
        except BaseException:
            # The claim did not commit: free the lock taken for it.
            self.claims.release_all()
            raise

    def _claim_locked(
        self, now: datetime, skip: set[str], busy: set[int], report: SendReport
    ) -> _Claimed | bool | None:
        with self.store.write(durable=True) as conn:
            row = ox.next_due(conn, now, skip, busy)
            if row is None:
                return None
            channel, why = self.channel(row.channel)
            if channel is None:
                self._settle(conn, row, None, "held", report, why)
                return True
            settings = self.channels.settings[row.channel]
            if row.to_customer and row.customer_id and ox.opted_out(conn, row.customer_id):
                self._settle(
                    conn,
                    row,
                    None,
                    "cancelled",
                    report,
                    "the customer opted out before it was sent",
                )
                return True
            try:
                recipient = channel.address(row.recipient)
            except PermanentFailure as exc:
                self._settle(conn, row, None, "dead", report, str(exc))
                return True
            except Exception as exc:  # a plugin's bug: keep the message for a person
                logger.exception("channel %s cannot address a message", row.channel)
                self._settle(conn, row, None, "held", report, f"cannot address it: {exc!r}")
                return True
            quiet = settings.quiet_hours
            if (
                row.to_customer
                and quiet
                and quiet.active(now.astimezone(self.site.timezone).time())
            ):
                morning = quiet.ends_after(now, self.site.timezone)
                ox.change(conn, row.id, None, next_attempt_at=morning)
                report.deferred += 1
                return True
            limit = settings.rate_limit
            if limit:
                # Another daemon's sender may be counting this channel right now: take
                # turns, so that together they never exceed the limit.
                lock_channel_for_transaction(conn, row.channel)
            if limit and ox.sent_since(conn, row.channel, now - limit.per) >= limit.count:
                skip.add(row.channel)
                return True
            if not self.claims.take(row.id):
                # Another sender is settling it this instant (it reconciled it and is
                # about to free its lock): leave it to the next pass.
                busy.add(row.id)
                return True
            token = uuid.uuid4().hex
            ox.change(
                conn,
                row.id,
                None,
                status="sending",
                claim_token=token,
                claimed_at=self._clock(now),
                attempts=row.attempts + 1,
            )
            message = replace(self._message(row, recipient, now), attempts=row.attempts + 1)
        return _Claimed(message, channel, settings, token)

    def _deliver(self, claimed: _Claimed, now: datetime, report: SendReport) -> None:
        """Send one claimed message, mark what happened, then free its lock."""
        try:
            self._send_and_mark(claimed, now, report)
        except BaseException:
            self.claims.release_all()
            raise
        self.claims.release(claimed.message.id)

    def _send_and_mark(self, claimed: _Claimed, now: datetime, report: SendReport) -> None:
        message, settings = claimed.message, claimed.settings
        values: dict[str, Any]
        try:
            receipt = claimed.channel.send(message)
        except TemporaryFailure as exc:
            reason = self._clean(str(exc))
            if message.attempts >= settings.retry.attempts:
                values = _dead(f"gave up after {message.attempts} attempts: {reason}")
                report.dead += 1
            else:
                delay = settings.retry.delay(message.attempts, self.rng)
                if exc.retry_after is not None:
                    # The provider said how long to wait: not sooner (nor past our cap).
                    delay = max(delay, min(exc.retry_after, settings.retry.max_delay))
                values = {
                    "status": "queued",
                    "next_attempt_at": now + delay,
                    "claim_token": None,
                    "last_error": reason,
                }
                report.retrying += 1
        except PermanentFailure as exc:
            values = _dead(self._clean(str(exc)))
            report.dead += 1
        except NeedsReview as exc:
            values = {"status": "held", "claim_token": None, "last_error": self._clean(str(exc))}
            report.held += 1
        except Exception as exc:  # OutcomeUnknown, or a plugin's bug: the provider may have it
            reason = self._clean(str(exc) if isinstance(exc, DeliveryError) else repr(exc))
            if not isinstance(exc, OutcomeUnknown):
                logger.exception("channel %s failed unexpectedly", message.channel)
            values = {"last_error": f"outcome unknown, to be checked with the provider: {reason}"}
            report.unknown += 1
        else:
            values = {
                "status": "sent",
                "sent_at": now,
                "provider_ref": receipt.ref[:100],
                "claim_token": None,
            }
            report.sent += 1
        logger.info(
            "message %d on %s to %s: %s%s",
            message.id,
            message.channel,
            mask_address(message.recipient),
            values.get("status", "sending"),
            f" ({values['last_error']})" if values.get("last_error") else "",
            extra={"rule": message.rule_id, "subject": message.customer_id},
        )
        with self.store.write() as conn:
            marked = ox.change(conn, message.id, claimed.token, **values)
        if not marked:
            # Only if this sender's lock was lost (its store session dropped) while it
            # sent, and another sender settled the message meanwhile.
            logger.error(
                "message %d on %s: its claim was taken over while this sender was sending it "
                "(%s); the recipient may get it twice, see `crmd outbox`",
                message.id,
                message.channel,
                values.get("status", "outcome unknown"),
                extra={"rule": message.rule_id, "subject": message.customer_id},
            )

    def _settle(
        self,
        conn: Any,
        row: Row[Any],
        token: str | None,
        status: str,
        report: SendReport,
        reason: str,
    ) -> None:
        """Give a message a final (or review) status without sending it."""
        reason = self._clean(reason)
        ox.change(conn, row.id, token, status=status, claim_token=None, last_error=reason)
        setattr(
            report, status if status != "cancelled" else "cancelled", getattr(report, status) + 1
        )
        logger.warning(
            "message %d on %s to %s %s: %s",
            row.id,
            row.channel,
            mask_address(row.recipient),
            status,
            reason,
            extra={"rule": row.rule_id, "subject": row.customer_id},
        )

    # ------------------------------------------------------------------ after a crash

    def _reconcile(self, now: datetime, report: SendReport) -> None:
        """Settle messages left "sending" longer than their channel's reconcile_after whose
        sender no longer holds them."""
        with self.store.read() as conn:
            rows = ox.in_flight(conn)
        for row in rows:
            settings = self.channels.settings.get(row.channel)
            after = settings.reconcile_after if settings else ChannelSettings.reconcile_after
            if row.claimed_at is None or row.claimed_at > self._clock(now) - after:
                # Too young: a sender may be on it still (SQLite tells by age alone), or
                # the provider may not list it yet.
                continue
            if not self.claims.take(row.id):
                logger.debug("message %d is still being sent by another sender", row.id)
                continue
            try:
                with self.store.read() as conn:
                    # Its sender may have marked it and freed it since it was listed.
                    interrupted = ox.still_claimed(conn, row.id, row.claim_token)
                if interrupted:
                    self._reconcile_one(row, now, report)
            except BaseException:
                self.claims.release_all()
                raise
            self.claims.release(row.id)

    def _reconcile_one(self, row: Row[Any], now: datetime, report: SendReport) -> None:
        unknown = f"its send was interrupted (claimed {row.claimed_at.isoformat()})"
        channel, why = self.channel(row.channel)
        try:
            if channel is None:
                raise NeedsReview(why)
            try:
                recipient = channel.address(row.recipient)
            except PermanentFailure:
                recipient = row.recipient
            receipt = channel.reconcile(self._message(row, recipient, now), row.claimed_at)
        except NeedsReview as exc:
            with self.store.write() as conn:
                self._settle(
                    conn,
                    row,
                    row.claim_token,
                    "held",
                    report,
                    f"{unknown} and whether it arrived is unknown: {exc}. Check with the "
                    f"recipient or provider, {REVIEW_HINT.format(id=row.id)}",
                )
            return
        except Exception as exc:  # the provider cannot be asked now: ask again next pass
            logger.warning("message %d: cannot reconcile yet: %s", row.id, self._clean(str(exc)))
            return
        with self.store.write() as conn:
            if receipt is not None:
                changed = ox.change(
                    conn,
                    row.id,
                    row.claim_token,
                    status="sent",
                    sent_at=now,
                    provider_ref=receipt.ref[:100],
                    claim_token=None,
                    last_error=f"{unknown}; the provider has it, so it was not sent again",
                )
            else:
                changed = ox.change(
                    conn,
                    row.id,
                    row.claim_token,
                    status="queued",
                    next_attempt_at=now,
                    claim_token=None,
                    last_error=f"{unknown}; the provider has no such message, so it goes again",
                )
        if not changed:
            logger.info("message %d: settled by another sender meanwhile", row.id)
        elif receipt is not None:
            report.reconciled += 1
            logger.info("message %d: reconciled as sent (%s)", row.id, receipt.ref)
        else:
            logger.info("message %d: the provider never got it; queued again", row.id)


def _dead(reason: str) -> dict[str, Any]:
    return {"status": "dead", "claim_token": None, "last_error": reason}
