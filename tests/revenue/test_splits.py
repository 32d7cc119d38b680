"""Properties of the split of a sale and of the simulated processor fee, for any amounts."""

import math
from fractions import Fraction
from uuid import UUID

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.revenue import ledger
from app.revenue.splits import Split, SplitError, simulated_processor_fee, split_sale

GROSS = st.integers(min_value=0, max_value=10**9)
BPS = st.integers(min_value=0, max_value=10_000)


@st.composite
def sales(draw: st.DrawFn) -> tuple[int, int, int]:
    gross = draw(GROSS)
    return gross, draw(st.integers(min_value=0, max_value=gross)), draw(BPS)


@given(sales())
def test_a_split_adds_up_to_the_gross_and_no_part_is_negative(sale):
    gross, fee, bps = sale
    split = split_sale(gross, fee, bps)
    assert split.processor_fee_minor + split.platform_fee_minor + split.builder_share_minor == gross
    assert min(split.processor_fee_minor, split.platform_fee_minor, split.builder_share_minor) >= 0
    assert split.processor_fee_minor == fee


@given(sales())
def test_the_platform_fee_is_rounded_down_unless_the_fees_would_exceed_the_gross(sale):
    gross, fee, bps = sale
    split = split_sale(gross, fee, bps)
    floor = gross * bps // 10_000
    if floor <= gross - fee:
        assert split.platform_fee_minor == floor
    else:  # capped: whatever the processor left, and the builder gets nothing
        assert split.platform_fee_minor == gross - fee
        assert split.builder_share_minor == 0


@given(sales())
def test_sale_and_refund_legs_balance(sale):
    split = split_sale(*sale)
    builder = UUID(int=1)
    assert sum(leg.amount_minor for leg in ledger.sale_legs(split, builder)) == 0
    assert sum(leg.amount_minor for leg in ledger.refund_legs(split, builder)) == 0


@given(GROSS, BPS, st.integers(min_value=0, max_value=10_000))
def test_simulated_processor_fee_is_the_percentage_half_up_plus_the_fixed_part_capped_at_the_gross(
    gross, bps, fixed
):
    fee = simulated_processor_fee(gross, bps, fixed)
    assert 0 <= fee <= gross
    exact, half = Fraction(gross * bps, 10_000), Fraction(1, 2)
    if gross == 0:
        assert fee == 0
    elif fee < gross:
        assert exact - half < fee - fixed <= exact + half
    else:
        assert math.floor(exact + half) + fixed >= gross


@given(GROSS.filter(lambda g: g > 0), BPS, st.integers(min_value=0, max_value=1000))
def test_simulated_processor_fee_never_falls_as_the_price_rises(gross, bps, fixed):
    assert simulated_processor_fee(gross, bps, fixed) <= simulated_processor_fee(gross + 1, bps, fixed)


def test_known_values():
    assert simulated_processor_fee(1900, 290, 30) == 85  # 55.1 -> 55, + 30
    assert simulated_processor_fee(50, 290, 30) == 31  # 1.45 -> 1, + 30
    assert simulated_processor_fee(20, 290, 30) == 20  # capped at the gross
    assert simulated_processor_fee(0, 290, 30) == 0  # free costs nothing
    assert split_sale(1900, 85, 2000) == Split(1900, 85, 380, 1435)
    assert split_sale(999, 0, 2000).platform_fee_minor == 199  # 199.8 rounded down


@pytest.mark.parametrize(
    ("gross", "fee", "bps"), [(-1, 0, 0), (100, 101, 0), (100, -1, 0), (100, 0, -1), (100, 0, 10_001)]
)
def test_impossible_sales_are_refused(gross, fee, bps):
    with pytest.raises(SplitError):
        split_sale(gross, fee, bps)


def test_a_split_that_does_not_add_up_cannot_exist():
    with pytest.raises(SplitError):
        Split(100, 10, 10, 10)
    with pytest.raises(SplitError):
        Split(100, 110, -10, 0)
