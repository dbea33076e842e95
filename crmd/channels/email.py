"""The `email` channel: e-mail through an SMTP server, composed and logged in by yagmail.

yagmail composes the message (UTF-8 subject and body) and logs in; the channel hands the
composed message to the connection itself, because yagmail's own send quietly re-sends
after a dropped connection, and a dropped connection after the data went out is exactly
when a second copy may reach the customer. SMTP cannot be asked afterwards whether a
message arrived, so an unknown outcome is held for review.
"""

from __future__ import annotations

import re
import smtplib
from collections.abc import Mapping
from typing import Any, ClassVar

import yagmail

from crmd.channels.base import (
    BaseChannel,
    Message,
    NeedsReview,
    OutcomeUnknown,
    PermanentFailure,
    Receipt,
    SecretSpec,
    TemporaryFailure,
)
from crmd.channels.secrets import redact
from crmd.site import Site

_ADDRESS = re.compile(r"[^@\s,<>]+@[^@\s,<>]+\.[^@\s,<>]+")
PASSWORD = SecretSpec("password", "CRMD_SMTP_PASSWORD", "smtp_password", "the SMTP password")


class EmailChannel(BaseChannel):
    """Sends from `from` through `host`:`port` (ssl, starttls or plain), logging in as `user`."""

    options: ClassVar[Mapping[str, Any]] = {
        "from": {"type": "string", "description": "the sender's e-mail address"},
        "host": {"type": "string", "description": "the SMTP server's host name"},
        "port": {"type": "integer", "minimum": 1, "maximum": 65535},
        "security": {"enum": ["ssl", "starttls", "none"]},
        "user": {"type": "string", "description": "the SMTP user name"},
        "login": {"type": "boolean"},
        "timeout_seconds": {"type": "number", "minimum": 1},
    }
    required_options: ClassVar[tuple[str, ...]] = ("from", "host")
    secrets: ClassVar[tuple[SecretSpec, ...]] = (PASSWORD,)

    @classmethod
    def secret_specs(cls, options: Mapping[str, Any]) -> tuple[SecretSpec, ...]:
        return cls.secrets if options.get("login", True) else ()

    @classmethod
    def option_problems(cls, options: Mapping[str, Any], site: Site) -> list[tuple[str, str]]:
        if not _ADDRESS.fullmatch(options["from"]):
            return [("from", f"from: {options['from']!r} is not an e-mail address")]
        return []

    def address(self, recipient: str) -> str:
        addresses = [a.strip() for a in recipient.split(",") if a.strip()]
        bad = [a for a in addresses if not _ADDRESS.fullmatch(a)]
        if not addresses or bad:
            raise PermanentFailure(f"invalid e-mail address: {', '.join(bad) or 'none given'}")
        return ", ".join(addresses)

    def _client(self) -> yagmail.SMTP:
        options = self.settings.options
        security = options.get("security", "starttls")
        login = bool(options.get("login", True))
        return yagmail.SMTP(
            user=str(options.get("user", options["from"])),
            password=self.runtime.secrets.get("password") if login else None,
            host=str(options["host"]),
            port=int(options.get("port", {"ssl": 465, "starttls": 587}.get(security, 25))),
            smtp_ssl=security == "ssl",
            smtp_starttls=security == "starttls",
            smtp_skip_login=not login,
            soft_email_validation=False,
            timeout=float(options.get("timeout_seconds", 30)),
        )

    def _clean(self, text: str) -> str:
        return redact(text, self.runtime.secrets.values())

    def send(self, message: Message) -> Receipt:
        options = self.settings.options
        domain = str(options["from"]).rpartition("@")[2]
        message_id = f"<crmd.{message.id}.{message.fire_id}@{domain}>"
        client = self._client()
        try:
            try:
                client.login()
            except smtplib.SMTPAuthenticationError as exc:
                raise NeedsReview(
                    f"the SMTP server refused the login ({exc.smtp_code}); check the user "
                    f"and the SMTP password"
                ) from None
            except (OSError, smtplib.SMTPException) as exc:
                raise TemporaryFailure(
                    f"cannot connect to the SMTP server: {self._clean(str(exc))}"
                ) from None
            recipients, text = client.prepare_send(
                to=[a.strip() for a in message.recipient.split(",")],
                subject=message.subject,
                # One part per line: yagmail turns line breaks into <br> in the plain text
                # too, but joins parts with real ones. `raw` keeps a line that happens to
                # name a file from being attached.
                contents=[yagmail.raw(line) for line in message.body.split("\n")],
                prettify_html=False,
                message_id=message_id,
            )
            try:
                client.smtp.sendmail(client.user, recipients, text)
            except smtplib.SMTPRecipientsRefused as exc:
                codes = [code for code, _ in exc.recipients.values()]
                reason = "; ".join(
                    f"{addr}: {code} {msg.decode(errors='replace')}"
                    for addr, (code, msg) in exc.recipients.items()
                )
                if all(500 <= code < 600 for code in codes):
                    raise PermanentFailure(f"recipient refused: {reason}") from None
                raise TemporaryFailure(f"recipient not accepted now: {reason}") from None
            except (smtplib.SMTPSenderRefused, smtplib.SMTPDataError) as exc:
                said = exc.smtp_error
                said = said.decode(errors="replace") if isinstance(said, bytes) else said
                reason = f"{exc.smtp_code} {said}"
                if 500 <= exc.smtp_code < 600:
                    raise PermanentFailure(f"the SMTP server refused it: {reason}") from None
                raise TemporaryFailure(f"the SMTP server deferred it: {reason}") from None
            except (OSError, smtplib.SMTPException) as exc:
                raise OutcomeUnknown(
                    f"the connection to the SMTP server failed while sending: "
                    f"{self._clean(str(exc))}; check the mailbox for Message-ID {message_id}"
                ) from None
        finally:
            try:
                client.close()
            except (OSError, smtplib.SMTPException):
                pass  # the message's fate is settled above; a failed goodbye changes nothing
        return Receipt(message_id)
