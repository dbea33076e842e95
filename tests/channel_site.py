"""A site with channels for the sender tests: a store, channel files, and queued messages."""

from __future__ import annotations

import random
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Row, func, insert, select

from crmd.channels.sender import Sender
from crmd.store.tables import outbox
from crmd.testing import Harness

T0 = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)  # 10:00 in Asia/Shanghai, a Monday

RULES = """\
rules:
  - id: thanks-sms
    when: {event: sale.delivered}
    do:
      - sms: {text: "{{ customer.name }}您好,感谢您选择我们!"}
"""


def sms_yaml(api_url: str, **extra: str) -> str:
    lines = {
        "type": "sms",
        "from": '"+15005550006"',
        "api_url": api_url,
        "timeout_seconds": "1",
        "retry": "{attempts: 3, first_delay_seconds: 60, max_delay_seconds: 600}",
        "reconcile_after_seconds": "60",
        **extra,
    }
    return "".join(f"{key}: {value}\n" for key, value in lines.items())


def email_yaml(port: int, **extra: str) -> str:
    lines = {
        "type": "email",
        "from": "crm@dealer.example.com",
        "host": "127.0.0.1",
        "port": str(port),
        "security": "none",
        "timeout_seconds": "5",
        **extra,
    }
    return "".join(f"{key}: {value}\n" for key, value in lines.items())


class ChannelSite(Harness):
    """A Harness whose site has channel files, and a sender with a seeded random source."""

    def __init__(
        self,
        root: Path,
        channels: Mapping[str, str],
        env: Mapping[str, str],
        store_url: str | None = None,
    ):
        (root / "channels").mkdir(parents=True, exist_ok=True)
        for name, text in channels.items():
            (root / "channels" / f"{name}.yaml").write_text(text, encoding="utf-8")
        super().__init__(root, RULES, store_url)
        self.env = dict(env)
        self.customer("C1", name="张三", phone="13800138000", email="zhang@example.com")
        self.sender = self.new_sender()

    def new_sender(self) -> Sender:
        sender = Sender.for_site(self.site, self.store, self.env)
        sender.rng = random.Random(7)
        return sender

    def queue(
        self,
        body: str,
        *,
        channel: str = "sms",
        recipient: str = "13800138000",
        subject: str = "",
        customer: str | None = "C1",
        at: datetime = T0,
        to_customer: bool = True,
    ) -> int:
        with self.store.write() as conn:
            fire_id = conn.execute(select(func.coalesce(func.max(outbox.c.fire_id), 0))).scalar()
            result = conn.execute(
                insert(outbox).values(
                    fire_id=int(fire_id or 0) + 1,
                    rule_id="test-rule",
                    channel=channel,
                    customer_id=customer,
                    recipient=recipient,
                    subject=subject,
                    body=body,
                    status="queued",
                    not_before=at,
                    next_attempt_at=at,
                    to_customer=to_customer,
                    attempts=0,
                    created_at=at,
                )
            )
            return int(result.inserted_primary_key[0])

    def message(self, message_id: int) -> Row[Any]:
        with self.store.read() as conn:
            row = conn.execute(select(outbox).where(outbox.c.id == message_id)).first()
        assert row is not None
        return row

    def send(self, at: datetime = T0, seconds: float = 0) -> Any:
        return self.sender.run_once(at + timedelta(seconds=seconds))
