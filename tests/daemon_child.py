"""What the daemon fault tests share: the rules of a busy dealership and a daemon process."""

from __future__ import annotations

import sys
import time
from pathlib import Path

RULES = """
rules:
  - id: delivery-welcome
    when: {event: sale.delivered}
    do:
      - task: {role: sales_callback, title: "欢迎 {{ customer.name }}", due: 1 day}
      - sms: {text: "{{ customer.name }},感谢您选择我们"}
  - id: sales-callback
    when: {event: sale.delivered, after: 3 days}
    do:
      - task: {role: sales_callback, title: "回访 {{ customer.name }}", due: 2 days}
  - id: daily-board
    when: {daily: "09:00"}
    do:
      - task: {role: cr_specialist, title: "看板 {{ fire.at | date }}", due: 8 hours}
"""

# A daemon whose engine commits five fires per transaction, so a kill lands between many.
CHILD = """
import sys
import time
from pathlib import Path
from crmd.daemon.clock import SystemClock
from crmd.daemon.service import load_config, serve
from crmd.daemon.logs import setup_logging
from crmd.site import load_site
from crmd.store.database import Store

def small_pages(site, store):
    config = load_config(site, store)
    config.engine.page_size = 5
    return config

setup_logging("info")
site = load_site(sys.argv[1])
serve(site, SystemClock(), lambda: Store.open(site.store_url, schema=site.store_schema),
      interval=0.05, configure=small_pages)
"""

CRMD = [sys.executable, "-c", "from crmd.cli.commands import main; main()"]


def wait_for_log(log: Path, line: str) -> None:
    """Until a daemon's log shows `line`; bounded by 30 s."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if line in log.read_text(errors="replace"):
            return
        time.sleep(0.05)
    raise AssertionError(f"{line!r} not in {log}")
