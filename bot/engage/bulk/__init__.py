"""Bulk runs as work: each row sent at most once at the account's pace (worker), and the run's state in the store (state)."""
