"""The `log` channel: writes each message to the log instead of sending it.

For trying rules out and for sites without a provider yet. Recipients are masked.
"""

from __future__ import annotations

import logging
from datetime import datetime

from crmd.channels.base import BaseChannel, Message, Receipt
from crmd.intake.phones import mask_address

logger = logging.getLogger(__name__)


class LogChannel(BaseChannel):
    """Logs messages at INFO; nothing leaves the machine."""

    def send(self, message: Message) -> Receipt:
        logger.info(
            "message %d on %s to %s: %s",
            message.id,
            self.settings.name,
            mask_address(message.recipient),
            message.subject or message.body,
            extra={"rule": message.rule_id, "subject": message.customer_id},
        )
        return Receipt(f"log:{message.id}")

    def reconcile(self, message: Message, claimed_at: datetime) -> Receipt | None:
        # A log line twice harms nobody: an interrupted one is simply written again.
        return None
