"""How a sale's gross is split. Computed once, at settlement, in integer minor units.

    gross = processor_fee + platform_fee + builder_share

* ``platform_fee = floor(gross * fee_bps / 10_000)``: rounding down, so any fraction of a minor
  unit goes to the builder. Nothing is lost: the builder's share is what remains.
* The processor's fee is a fact reported by the processor (Stripe's balance transaction, or
  the local provider's simulated 2.9% + 30). The builder bears it: it comes out of their share.
* When the fees would exceed the gross (only on tiny prices), the builder's share is zero and
  the platform fee shrinks to what is left; no part is ever negative.
"""

from dataclasses import dataclass


class SplitError(ValueError):
    pass


@dataclass(frozen=True)
class Split:
    gross_minor: int
    processor_fee_minor: int
    platform_fee_minor: int
    builder_share_minor: int

    def __post_init__(self) -> None:
        parts = (self.processor_fee_minor, self.platform_fee_minor, self.builder_share_minor)
        if any(part < 0 for part in parts) or sum(parts) != self.gross_minor:
            raise SplitError(f"split does not add up: {self}")


def split_sale(gross_minor: int, processor_fee_minor: int, platform_fee_bps: int) -> Split:
    if gross_minor < 0:
        raise SplitError("gross must not be negative")
    if not 0 <= processor_fee_minor <= gross_minor:
        raise SplitError("processor fee must be between 0 and the gross")
    if not 0 <= platform_fee_bps <= 10_000:
        raise SplitError("platform fee must be between 0 and 10000 basis points")
    platform_fee = gross_minor * platform_fee_bps // 10_000
    platform_fee = min(platform_fee, gross_minor - processor_fee_minor)
    builder_share = gross_minor - processor_fee_minor - platform_fee
    return Split(gross_minor, processor_fee_minor, platform_fee, builder_share)


def simulated_processor_fee(gross_minor: int, fee_bps: int, fixed_minor: int) -> int:
    """The local provider's stand-in for a card processor's fee (half up, capped at the gross);
    free purchases cost nothing."""
    if gross_minor == 0:
        return 0
    variable = (gross_minor * fee_bps + 5_000) // 10_000
    return min(gross_minor, variable + fixed_minor)
