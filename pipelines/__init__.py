"""Bazaar's Dagster code location: landing compaction, dbt models, publishing (``README.md``)."""
