"""``?page=&limit=&sort=`` parameters and the query helper that fills a ``Page``."""

from dataclasses import dataclass
from typing import Annotated, Any, TypeVarTuple

from fastapi import Depends, Query
from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from app.core.errors import ValidationFailed

Ts = TypeVarTuple("Ts")


@dataclass(frozen=True)
class PageParams:
    page: int
    limit: int
    sort: str | None

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.limit


def page_params(
    page: Annotated[int, Query(ge=1, le=100_000, description="1-based page number")] = 1,
    limit: Annotated[int, Query(ge=1, le=100, description="Items per page (max 100)")] = 20,
    sort: Annotated[
        str | None, Query(max_length=40, description="Field to sort by; `-` prefix for descending")
    ] = None,
) -> PageParams:
    return PageParams(page=page, limit=limit, sort=sort)


Pagination = Annotated[PageParams, Depends(page_params)]


def apply_sort(
    stmt: Select[*Ts],
    sort: str | None,
    allowed: dict[str, InstrumentedAttribute[Any]],
    default: str,
    tiebreak: InstrumentedAttribute[Any],
) -> Select[*Ts]:
    key = sort or default
    descending = key.startswith("-")
    name = key.removeprefix("-")
    if name not in allowed:
        raise ValidationFailed(
            f"Cannot sort by {name!r}",
            code="invalid_sort",
            details={"allowed": sorted(allowed)},
        )
    column = allowed[name]
    ordered = column.desc() if descending else column.asc()
    return stmt.order_by(ordered, tiebreak.desc() if descending else tiebreak.asc())


async def _total(db: AsyncSession, stmt: Select[*Ts]) -> int:
    total_stmt = select(func.count()).select_from(stmt.order_by(None).subquery())
    return int((await db.execute(total_stmt)).scalar_one())


async def paginate(db: AsyncSession, stmt: Select[*Ts], params: PageParams) -> tuple[list[Any], int]:
    """One page of the first selected entity, and the total count."""
    rows = (await db.execute(stmt.limit(params.limit).offset(params.offset))).scalars().all()
    return list(rows), await _total(db, stmt)


async def paginate_rows(
    db: AsyncSession, stmt: Select[*Ts], params: PageParams
) -> tuple[list[tuple[Any, ...]], int]:
    """One page of whole rows (several selected columns), and the total count."""
    rows = (await db.execute(stmt.limit(params.limit).offset(params.offset))).all()
    return [tuple(row) for row in rows], await _total(db, stmt)


def like_pattern(text: str) -> str:
    """A ``%text%`` ILIKE pattern with the user's own wildcards escaped."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"
