"""Attendance: the append-only, hash-chained, signed ledger and what is derived from it."""
