"""crmd: a rules-driven scheduler for a car dealership's customer-relations department."""

from __future__ import annotations

__version__ = "0.1.0"
