"""The listing state machine (admin moves; publishing creates or re-opens a listing).

pending_review -> active | delisted
active         -> held | delisted
held           -> active | delisted
delisted       -> (publish again)
"""

from app.models import ListingStatus as L
from app.models import ProjectStatus as P

ADMIN_TRANSITIONS: dict[L, frozenset[L]] = {
    L.PENDING_REVIEW: frozenset({L.ACTIVE, L.DELISTED}),
    L.ACTIVE: frozenset({L.HELD, L.DELISTED}),
    L.HELD: frozenset({L.ACTIVE, L.DELISTED}),
    L.DELISTED: frozenset(),
}

# The project's status that goes with each listing status.
PROJECT_STATUS: dict[L, P] = {
    L.PENDING_REVIEW: P.READY,
    L.ACTIVE: P.PUBLISHED,
    L.HELD: P.HELD,
    L.DELISTED: P.READY,
}

EVENT_OF: dict[L, str] = {
    L.ACTIVE: "listing.activated",
    L.HELD: "listing.held",
    L.DELISTED: "listing.delisted",
}
