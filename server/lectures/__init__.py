"""The lecture service: creating a lecture and its credit rule (service.py)."""
