"""What an admin, a builder and an end user read from the marts after the marketplace story
(tests/warehouse/scenario.py) was landed, duplicates included, and built with `dbt build`
(so every dbt data test and unit test passed too)."""

from datetime import date
from decimal import Decimal

import duckdb

from tests.warehouse.scenario import (
    ANSWERS,
    PLAN_GROSS,
    PLAN_PROCESSOR_FEE,
    PLAN_TAX,
    SALES_PAL_SPLIT,
    SUPPORT_BOT_SPLIT,
    uid,
)

MONDAY, TUESDAY, WEDNESDAY = date(2026, 11, 2), date(2026, 11, 3), date(2026, 11, 4)


def one(marts: duckdb.DuckDBPyConnection, sql: str, *params: object) -> tuple:
    row = marts.execute(sql, list(params)).fetchone()
    assert row is not None, sql
    return row


def test_marts_are_published_in_the_marts_schema_with_the_contract_names(
    marts: duckdb.DuckDBPyConnection,
) -> None:
    tables = {
        name
        for (name,) in marts.execute(
            "select table_name from information_schema.tables where table_schema = 'marts'"
        ).fetchall()
    }
    assert tables == {
        "fct_revenue_splits",
        "fct_ledger_entries",
        "revenue_daily",
        "payouts_daily",
        "platform_money_daily",
        "platform_activity",
        "usage_by_period",
        "end_user_spend_daily",
        "leaderboards",
        "dim_projects",
        "fct_chat_messages",
        "llm_usage_daily",
        "project_usage_by_period",
    }


def test_a_sale_that_landed_twice_is_counted_once(marts: duckdb.DuckDBPyConnection) -> None:
    assert one(
        marts, "select count(*) from marts.fct_revenue_splits where purchase_id = ?", uid("purchase-1")
    ) == (1,)
    settlements = one(
        marts,
        """
        select count(distinct transaction_id)
        from marts.fct_ledger_entries
        where kind = 'settlement' and purchase_id = ?
        """,
        uid("purchase-1"),
    )
    assert settlements == (1,)


def test_admin_sees_gmv_refunds_and_net_revenue_reconciled_to_the_cent(
    marts: duckdb.DuckDBPyConnection,
) -> None:
    gmv, refunded, platform_fees, billing, fee_expense, net_revenue, payouts_paid = one(
        marts,
        """
        select sum(gmv_minor), sum(refunded_minor), sum(platform_fees_minor), sum(billing_revenue_minor),
               sum(fee_expense_minor), sum(net_revenue_minor), sum(payouts_paid_minor)
        from marts.platform_money_daily where currency = 'usd'
        """,
    )
    support_gross, support_fee, support_platform, _ = SUPPORT_BOT_SPLIT
    sales_gross, _, sales_platform, _ = SALES_PAL_SPLIT
    assert gmv == 2 * support_gross + sales_gross == 9000
    assert refunded == support_gross
    # Three paid sales' fees, one of them given back by the refund.
    assert platform_fees == 2 * support_platform + sales_platform - support_platform == 700
    assert billing == PLAN_GROSS - PLAN_TAX == 2000
    # The plan's processor fee, and the fee the processor kept on the refunded sale.
    assert fee_expense == PLAN_PROCESSOR_FEE + support_fee == 187
    assert net_revenue == platform_fees + billing - fee_expense == 2513
    assert payouts_paid == SUPPORT_BOT_SPLIT[3]


def test_platform_money_lands_on_the_day_it_moved(marts: duckdb.DuckDBPyConnection) -> None:
    rows = marts.execute(
        """
        select day, gmv_minor, refunded_minor, net_revenue_minor
        from marts.platform_money_daily
        order by day
        """
    ).fetchall()
    assert rows == [
        (MONDAY, 4000, 0, 400),
        (TUESDAY, 5000, 0, 500 + 2000 - PLAN_PROCESSOR_FEE),
        (WEDNESDAY, 0, 2000, -200 - SUPPORT_BOT_SPLIT[1]),
    ]


def test_every_split_adds_up_and_the_refunded_one_is_flagged(marts: duckdb.DuckDBPyConnection) -> None:
    rows = marts.execute(
        """
        select purchase_id, gross_minor, processor_fee_minor,
               platform_fee_minor, builder_share_minor, is_refunded, refunded_day
        from marts.fct_revenue_splits order by completed_at
        """
    ).fetchall()
    assert rows == [
        (uid("purchase-1"), *SUPPORT_BOT_SPLIT, False, None),
        (uid("purchase-2"), *SUPPORT_BOT_SPLIT, True, WEDNESDAY),
        (uid("purchase-3"), *SALES_PAL_SPLIT, False, None),
        (uid("purchase-4"), 0, 0, 0, 0, False, None),
    ]


def test_builder_sees_sales_on_their_day_and_the_refund_on_its_own(marts: duckdb.DuckDBPyConnection) -> None:
    rows = marts.execute(
        """
        select day, sales, gross_minor, builder_share_minor,
               refunds, refunded_gross_minor, net_gross_minor, net_builder_share_minor
        from marts.revenue_daily where project_id = ? order by day
        """,
        [uid("support-bot")],
    ).fetchall()
    share = SUPPORT_BOT_SPLIT[3]
    assert rows == [
        (MONDAY, 2, 4000, 2 * share, 0, 0, 4000, 2 * share),
        (WEDNESDAY, 0, 0, 0, 1, 2000, -2000, -share),
    ]


def test_builder_balance_from_the_ledger_is_shares_minus_refunds_minus_payouts(
    marts: duckdb.DuckDBPyConnection,
) -> None:
    balances = dict(
        marts.execute(
            """
            select builder_id, -sum(amount_minor)
            from marts.fct_ledger_entries
            where account like 'builder:%'
            group by builder_id
            """
        ).fetchall()
    )
    # builder-1: two Support Bot shares, one refunded, one paid out. builder-2: the failed
    # payout gave the Sales Pal share back.
    assert balances == {uid("builder-1"): 0, uid("builder-2"): SALES_PAL_SPLIT[3]}


def test_payouts_per_builder_and_outcome(marts: duckdb.DuckDBPyConnection) -> None:
    rows = {
        builder: rest
        for builder, *rest in marts.execute(
            """
            select builder_id, payouts_created, created_minor, payouts_paid, paid_minor,
                   payouts_failed, failed_minor
            from marts.payouts_daily
            where day = ?
            """,
            [WEDNESDAY],
        ).fetchall()
    }
    assert rows == {
        uid("builder-1"): [1, 1712, 1, 1712, 0, 0],
        uid("builder-2"): [1, 4325, 0, 0, 1, 4325],
    }


def test_end_user_spend_and_refund(marts: duckdb.DuckDBPyConnection) -> None:
    rows = marts.execute(
        """
        select day, purchases, spend_minor, refunds, refunded_minor
        from marts.end_user_spend_daily
        where buyer_id = ?
        order by day
        """,
        [uid("buyer-2")],
    ).fetchall()
    assert rows == [(MONDAY, 1, 2000, 0, 0), (TUESDAY, 1, 0, 0, 0), (WEDNESDAY, 0, 0, 1, 2000)]


def test_platform_kpis_for_the_week(marts: duckdb.DuckDBPyConnection) -> None:
    row = one(
        marts,
        """
        select signups, builder_signups, end_user_signups,
               purchases, refunds, active_builders, active_end_users,
               listing_views, conversion_rate
        from marts.platform_activity where grain = 'week' and period_start = ?
        """,
        MONDAY,
    )
    # Five accounts (builder-2 is both a builder and an end user); four purchases, one
    # refunded; the story has no listing views, so no conversion rate.
    assert row == (5, 2, 3, 4, 1, 2, 2, 0, None)


def test_usage_counts_every_beacon_once(marts: duckdb.DuckDBPyConnection) -> None:
    monday = one(
        marts,
        """
        select impressions, opens, messages, tokens, sessions, visitors, customers, avg_latency_ms
        from marts.usage_by_period where grain = 'day' and period_start = ? and widget_id = ?
        """,
        MONDAY,
        uid("widget-1"),
    )
    assert monday == (3, 2, 4, 200, 2, 3, 1, 500.0)
    week = one(
        marts,
        """
        select messages, sessions, project_id, builder_id, end_user_id
        from marts.usage_by_period
        where grain = 'week' and widget_id = ?
        """,
        uid("widget-1"),
    )
    # Monday's relanded message is not counted again on Tuesday.
    assert week == (5, 3, uid("support-bot"), uid("builder-1"), uid("buyer-1"))


def test_leaderboards_rank_builders_by_net_revenue_and_widgets_by_messages(
    marts: duckdb.DuckDBPyConnection,
) -> None:
    builders = marts.execute(
        """
        select rank, entity_id, value
        from marts.leaderboards
        where board = 'builders_by_revenue'
        and grain = 'all_time'
        and currency = 'usd'
        order by rank
        """
    ).fetchall()
    assert builders == [(1, uid("builder-2"), 5000), (2, uid("builder-1"), 2000)]
    widgets = marts.execute(
        """
        select entity_id, value
        from marts.leaderboards
        where board = 'widgets_by_usage'
        and grain = 'week' and period_start = ?
        order by rank
        """,
        [MONDAY],
    ).fetchall()
    assert widgets == [(uid("widget-1"), 5), (uid("widget-2"), 2), (uid("widget-3"), 1)]
    monday_builders = marts.execute(
        """
        select entity_id, value
        from marts.leaderboards
        where board = 'builders_by_revenue'
        and grain = 'day' and period_start = ?
        """,
        [MONDAY],
    ).fetchall()
    assert monday_builders == [(uid("builder-1"), 4000)]


def test_projects_by_purchases_counts_refunds_out_and_free_purchases_in(
    marts: duckdb.DuckDBPyConnection,
) -> None:
    board = dict(
        marts.execute(
            """
            select entity_id, value
            from marts.leaderboards
            where board = 'projects_by_purchases'
            and grain = 'all_time'
            """
        ).fetchall()
    )
    assert board == {uid("support-bot"): 1, uid("sales-pal"): 1, uid("free-helper"): 1}


def test_projects_carry_their_name_builder_and_listing(marts: duckdb.DuckDBPyConnection) -> None:
    rows = marts.execute(
        "select name, builder_id, price_minor, listing_status from marts.dim_projects order by name"
    ).fetchall()
    assert rows == [
        ("Free Helper", uid("builder-1"), 0, "active"),
        ("Sales Pal", uid("builder-2"), 5000, "active"),
        ("Support Bot", uid("builder-1"), 2000, "active"),
    ]


def test_every_llm_answer_counts_once_per_day_project_channel_and_model_to_the_token_and_cent(
    marts: duckdb.DuckDBPyConnection,
) -> None:
    rows = marts.execute(
        """
        select day, project_id, builder_id, channel, provider, model, answers, conversations,
               input_tokens, output_tokens, cost_usd, unpriced_answers, tool_calls
        from marts.llm_usage_daily
        order by day, project_id, channel, model
        """
    ).fetchall()
    support_bot, sales_pal = uid("support-bot"), uid("sales-pal")
    builder_1, builder_2 = uid("builder-1"), uid("builder-2")
    gpt, haiku = ("openai", "gpt-4o-mini"), ("anthropic", "claude-haiku-4-5")
    # Monday's second studio answer landed again on Tuesday: counted once, on Monday.
    assert rows == [
        (MONDAY, support_bot, builder_1, "studio", *gpt, 2, 1, 2700, 720, Decimal("0.000837"), 0, 1),
        (MONDAY, support_bot, builder_1, "widget", *gpt, 1, 1, 800, 200, Decimal("0.000240"), 0, 0),
        (TUESDAY, support_bot, builder_1, "studio", *haiku, 1, 1, 2000, 500, Decimal("0.0045"), 0, 0),
        (TUESDAY, support_bot, builder_1, "widget", *gpt, 1, 1, 900, 250, Decimal("0.000285"), 0, 2),
        (WEDNESDAY, sales_pal, builder_2, "studio", "offline", "echo", 1, 1, 600, 150, Decimal(0), 1, 0),
        (WEDNESDAY, support_bot, builder_1, "studio", *gpt, 1, 1, 100, 50, Decimal("0.000045"), 0, 0),
    ]
    answers, tokens_in, tokens_out, cost = one(
        marts,
        "select sum(answers), sum(input_tokens), sum(output_tokens), sum(cost_usd) "
        "from marts.llm_usage_daily",
    )
    assert (answers, tokens_in, tokens_out) == (
        len(ANSWERS),
        sum(a.input_tokens for a in ANSWERS.values()),
        sum(a.output_tokens for a in ANSWERS.values()),
    )
    assert cost == sum(Decimal(a.cost_usd) for a in ANSWERS.values() if a.cost_usd) == Decimal("0.005907")


def test_llm_timings_are_the_days_own_average_and_95th_percentile(marts: duckdb.DuckDBPyConnection) -> None:
    row = one(
        marts,
        """
        select avg_latency_ms, p95_latency_ms, avg_first_token_ms, p95_first_token_ms
        from marts.llm_usage_daily where day = ? and channel = 'studio' and model = 'gpt-4o-mini'
        """,
        MONDAY,
    )
    # 900 and 1,100 ms (first tokens 250 and 300): p95 interpolates between the two.
    assert row == (1000.0, 1090.0, 275.0, 297.5)
    unstreamed = one(
        marts,
        "select avg_first_token_ms, p95_first_token_ms from marts.llm_usage_daily where model = 'echo'",
    )
    assert unstreamed == (None, None)


def test_each_answer_is_one_fact_row_without_the_visitors_id(marts: duckdb.DuckDBPyConnection) -> None:
    assert one(marts, "select count(*), count(distinct message_id) from marts.fct_chat_messages") == (
        len(ANSWERS),
        len(ANSWERS),
    )
    columns = {
        name
        for (name,) in marts.execute(
            "select column_name from information_schema.columns where table_name = 'fct_chat_messages'"
        ).fetchall()
    }
    assert "visitor_id" not in columns
    widget_answers = marts.execute(
        "select widget_id, user_id from marts.fct_chat_messages where channel = 'widget'"
    ).fetchall()
    assert widget_answers == [(uid("widget-1"), None)] * 2


def test_project_usage_puts_builder_test_chats_beside_widget_beacons_without_adding_them(
    marts: duckdb.DuckDBPyConnection,
) -> None:
    rows = marts.execute(
        """
        select project_id, builder_id, widgets, widget_messages, widget_tokens,
               studio_answers, widget_answers, studio_conversations, widget_conversations,
               llm_input_tokens, llm_output_tokens, llm_cost_usd, llm_unpriced_answers
        from marts.project_usage_by_period
        where grain = 'week' and period_start = ?
        order by project_id
        """,
        [MONDAY],
    ).fetchall()
    # Support Bot: widget-1 and widget-3 sent 6 message beacons; its LLM answered 4 times in
    # the studio (builder-1 three times in two chats, the admin once) and twice in widget-1's
    # one chat. Sales Pal: widget-2's beacons and builder-2's unpriced studio answer.
    expected = {
        uid("support-bot"): (uid("builder-1"), 2, 6, 200, 4, 2, 3, 1, 6500, 1720, Decimal("0.005907"), 0),
        uid("sales-pal"): (uid("builder-2"), 1, 2, 0, 1, 0, 1, 0, 600, 150, Decimal(0), 1),
    }
    assert {project: tuple(rest) for project, *rest in rows} == expected
    # Days add up to the week for everything but distinct conversations: widget-1's chat went
    # on from Monday to Tuesday.
    days = one(
        marts,
        """
        select sum(widget_messages), sum(studio_answers), sum(widget_answers), sum(llm_cost_usd),
               sum(widget_conversations)
        from marts.project_usage_by_period where grain = 'day' and project_id = ?
        """,
        uid("support-bot"),
    )
    assert days == (6, 4, 2, Decimal("0.005907"), 2)


def test_a_builder_testing_their_project_in_the_studio_is_active_but_an_admin_trying_it_is_not(
    marts: duckdb.DuckDBPyConnection,
) -> None:
    active = marts.execute(
        """
        select period_start, active_builders from marts.platform_activity
        where grain = 'day' order by period_start
        """
    ).fetchall()
    # Tuesday: builder-1 only chatted in the studio; Wednesday: builder-2 did, and the admin
    # tried Support Bot (an administrator is not its builder).
    assert active == [(MONDAY, 2), (TUESDAY, 1), (WEDNESDAY, 1)]
