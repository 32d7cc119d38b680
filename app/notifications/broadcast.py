"""Admins' broadcasts, delivered by the worker in batches."""
