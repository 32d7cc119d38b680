"""docs/events.md documents every event type the code records ("a new event type updates this
page in the same change"). The types are read from the source: every ``record_event`` call's
type argument, resolved when it is a variable or a lookup in a table of types."""

import ast
import re
from pathlib import Path

from app.marketplace.states import EVENT_OF

ROOT = Path(__file__).resolve().parents[2]
EVENT_TYPE = re.compile(r"^[a-z_]+\.[a-z_]+$")


def _strings(expression: ast.expr) -> set[str]:
    """The strings an expression can be: a constant, or either branch of ``a if c else b``."""
    if isinstance(expression, ast.Constant) and isinstance(expression.value, str):
        return {expression.value}
    if isinstance(expression, ast.IfExp):
        return _strings(expression.body) | _strings(expression.orelse)
    return set()


def _strings_assigned_to(function: ast.AST, name: str) -> set[str]:
    """Strings a function assigns to ``name`` (also through tuple unpacking)."""
    found: set[str] = set()
    for node in ast.walk(function):
        if not isinstance(node, ast.Assign):
            continue
        for target in node.targets:
            pairs: list[tuple[ast.expr, ast.expr]] = [(target, node.value)]
            if isinstance(target, ast.Tuple) and isinstance(node.value, ast.Tuple):
                pairs = list(zip(target.elts, node.value.elts, strict=False))
            for left, right in pairs:
                if isinstance(left, ast.Name) and left.id == name:
                    found |= _strings(right)
    return found


def recorded_event_types() -> dict[str, str]:
    """Every event type recorded in ``app/``, with where."""
    types: dict[str, str] = {}
    for path in sorted((ROOT / "app").rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        functions = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
        for function in functions:
            for call in ast.walk(function):
                if not (
                    isinstance(call, ast.Call)
                    and getattr(call.func, "id", getattr(call.func, "attr", None)) == "record_event"
                    and len(call.args) >= 2
                ):
                    continue
                argument = call.args[1]
                where = f"{path.relative_to(ROOT)}:{call.lineno}"
                if isinstance(argument, ast.Constant | ast.IfExp):
                    found = _strings(argument)
                elif isinstance(argument, ast.Subscript) and getattr(argument.value, "id", "") == "EVENT_OF":
                    found = set(EVENT_OF.values())
                elif isinstance(argument, ast.Name):
                    found = _strings_assigned_to(function, argument.id)
                else:
                    found = set()
                assert found, f"{where}: cannot tell which event type is recorded; extend this test"
                for event_type in found:
                    assert EVENT_TYPE.match(event_type), f"{where}: {event_type!r} is not <entity>.<what>"
                    types[event_type] = where
    return types


def documented_event_types() -> set[str]:
    text = (ROOT / "docs" / "events.md").read_text()
    headings = [line for line in text.splitlines() if line.startswith("### ")]
    return {t for heading in headings for t in re.findall(r"`([a-z_]+\.[a-z_]+)`", heading)}


def test_the_source_records_the_marketplace_and_money_events() -> None:
    recorded = set(recorded_event_types())

    assert {
        "listing.published",
        "listing.activated",
        "listing.held",
        "listing.delisted",
        "purchase.created",
        "purchase.completed",
        "purchase.failed",
        "purchase.refunded",
        "payment.succeeded",
        "payment.failed",
        "payment.refunded",
        "ledger.entry_posted",
        "invoice.issued",
        "invoice.paid",
        "invoice.voided",
    } <= recorded


def test_every_recorded_event_type_has_a_section_in_docs_events_md() -> None:
    recorded = recorded_event_types()

    undocumented = {t: where for t, where in recorded.items() if t not in documented_event_types()}

    assert undocumented == {}, "document these in docs/events.md"


def test_docs_events_md_documents_no_event_type_the_code_does_not_record() -> None:
    assert documented_event_types() - set(recorded_event_types()) == set()
