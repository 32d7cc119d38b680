"""The warehouse's assets: landing files -> dbt models (tests as checks) -> served marts."""

from pipelines.assets.dbt import warehouse_models
from pipelines.assets.landing import landing
from pipelines.assets.serve import served_marts

__all__ = ["landing", "served_marts", "warehouse_models"]
