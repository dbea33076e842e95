"""The `email` channel: e-mail through an SMTP server, logged in by yagmail.

yagmail opens the connection and logs in (SSL, STARTTLS or plain). The message itself is
composed here with the standard library: a plain-text part exactly as the rule rendered it
and an HTML alternative with the same text escaped, so a customer's name or note holding
`<` or `&` is shown as written and never read as markup. (yagmail's composer puts the same
string in both parts, so one of them would be wrong.) The channel hands the message to the
connection itself, because yagmail's own send quietly re-sends after a dropped connection,
and a dropped connection after the data went out is exactly when a second copy may reach
the customer. SMTP cannot be asked afterwards whether a message arrived, so an unknown
outcome is held for review.
"""

from __future__ import annotations

import html
import smtplib
from collections.abc import Mapping
from email.message import EmailMessage
from email.policy import SMTP, default
from email.utils import formatdate
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
from crmd.intake.emails import is_address
from crmd.site import Site

PASSWORD = SecretSpec("password", "CRMD_SMTP_PASSWORD", "smtp_password", "the SMTP password")


def compose(sender: str, recipients: list[str], subject: str, body: str, message_id: str) -> bytes:
    """The message as it goes on the wire: UTF-8 text, plus the same text as escaped HTML."""
    mail = EmailMessage(policy=default)
    mail["From"] = sender
    mail["To"] = ", ".join(recipients)
    mail["Subject"] = subject
    mail["Date"] = formatdate(localtime=True)
    mail["Message-ID"] = message_id
    # base64, as before: the text arrives exactly as written, line ends included.
    mail.set_content(body, charset="utf-8", cte="base64")
    lines = "<br>\n".join(html.escape(line) for line in body.split("\n"))
    mail.add_alternative(
        f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"></head>\n'
        f"<body><div>{lines}</div></body></html>\n",
        subtype="html",
        charset="utf-8",
        cte="base64",
    )
    return mail.as_bytes(policy=SMTP)  # CRLF line ends on the wire


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
        if not is_address(options["from"]):
            return [("from", f"from: {options['from']!r} is not an e-mail address")]
        return []

    def address(self, recipient: str) -> str:
        addresses = [a.strip() for a in recipient.split(",") if a.strip()]
        bad = [a for a in addresses if not is_address(a)]
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
            recipients = [a.strip() for a in message.recipient.split(",")]
            data = compose(
                str(options["from"]), recipients, message.subject, message.body, message_id
            )
            try:
                client.smtp.sendmail(client.user, recipients, data)
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
