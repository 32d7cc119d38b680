"""The project state machine.

Builders move a project through development; ``published`` and ``held`` belong to the
marketplace, which sets them through ``ProjectService.set_marketplace_status``.

    draft <-> in_development <-> ready --(marketplace)--> published <-> held
      ^            |               |                          |
      +--------- archived <--------+---------------------------+ (marketplace delists first)
"""

from app.models import ProjectStatus as S

OWNER_TRANSITIONS: dict[S, frozenset[S]] = {
    S.DRAFT: frozenset({S.IN_DEVELOPMENT, S.ARCHIVED}),
    S.IN_DEVELOPMENT: frozenset({S.DRAFT, S.READY, S.ARCHIVED}),
    S.READY: frozenset({S.IN_DEVELOPMENT, S.ARCHIVED}),
    S.PUBLISHED: frozenset(),
    S.HELD: frozenset(),
    S.ARCHIVED: frozenset({S.DRAFT}),
}

MARKETPLACE_TRANSITIONS: dict[S, frozenset[S]] = {
    S.DRAFT: frozenset(),
    S.IN_DEVELOPMENT: frozenset(),
    S.READY: frozenset({S.PUBLISHED}),
    S.PUBLISHED: frozenset({S.HELD, S.READY}),
    S.HELD: frozenset({S.PUBLISHED, S.READY}),
    S.ARCHIVED: frozenset(),
}

# Statuses in which the project is on the marketplace: it cannot be edited away or deleted.
LISTED = frozenset({S.PUBLISHED, S.HELD})


def owner_may_move(current: S, target: S) -> bool:
    return target in OWNER_TRANSITIONS[current]


def marketplace_may_move(current: S, target: S) -> bool:
    return target in MARKETPLACE_TRANSITIONS[current]
