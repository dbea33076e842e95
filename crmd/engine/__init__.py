"""Evaluation: candidates, fire times, actions and the fires ledger.

Run against the store with the clock injected: no other I/O.
"""
