"""Notification templates: seeded from ``templates/*.toml``, stored as data, rendered with Jinja2.

A template file is named after its type (``sale.new.toml`` is type ``sale.new``) and holds:

* ``category``: the preference category (``app.models.NotificationCategory``);
* ``description``: when it is sent, for the admins' template list;
* ``variables``: the names the template may use; a render must give exactly these;
* ``title`` (in-app title and email subject), ``message`` (in-app text and the email's text
  part) and ``html`` (the email's HTML part).

Templates render in Jinja2's sandbox with ``StrictUndefined``; ``html`` is autoescaped, so a
project called ``<script>`` reaches a mail client as text. ``title`` and ``message`` are plain
text (the dashboard and mail clients show them as text).
"""

import hashlib
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import StrictUndefined, TemplateError, meta
from jinja2.sandbox import SandboxedEnvironment
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import ValidationFailed
from app.models import NotificationCategory, NotificationTemplate

TEMPLATE_DIR = Path(__file__).parent / "templates"
TITLE_MAX = 200


@dataclass(frozen=True)
class TemplateSpec:
    type: str
    category: str
    description: str
    variables: tuple[str, ...]
    title: str
    message: str
    html: str

    @property
    def source_hash(self) -> str:
        text = "\x1f".join(
            [self.category, self.description, ",".join(self.variables), self.title, self.message, self.html]
        )
        return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class Rendered:
    title: str
    message: str
    html: str


_text = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False)
_html = SandboxedEnvironment(undefined=StrictUndefined, autoescape=True)


class TemplateInvalid(ValueError):
    """A template that does not parse or uses variables it does not declare."""


def check_template(spec: TemplateSpec) -> None:
    """Raise ``TemplateInvalid`` unless every part parses and uses only declared variables."""
    if spec.category not in set(NotificationCategory):
        raise TemplateInvalid(f"unknown category {spec.category!r}")
    declared = set(spec.variables)
    for part, env in (("title", _text), ("message", _text), ("html", _html)):
        source = getattr(spec, part)
        try:
            used = meta.find_undeclared_variables(env.parse(source))
        except TemplateError as exc:
            raise TemplateInvalid(f"{part}: {exc}") from exc
        if unknown := sorted(used - declared):
            raise TemplateInvalid(f"{part} uses undeclared variables: {', '.join(unknown)}")


def load_file(path: Path) -> TemplateSpec:
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    spec = TemplateSpec(
        type=path.name.removesuffix(".toml"),
        category=str(data["category"]),
        description=str(data.get("description", "")).strip(),
        variables=tuple(str(name) for name in data.get("variables", [])),
        title=str(data["title"]).strip(),
        message=str(data["message"]).strip(),
        html=str(data.get("html", "")).strip(),
    )
    check_template(spec)
    return spec


@cache
def file_templates() -> dict[str, TemplateSpec]:
    """Every template shipped with the code, by type."""
    return {spec.type: spec for spec in map(load_file, sorted(TEMPLATE_DIR.glob("*.toml")))}


def spec_of(row: NotificationTemplate) -> TemplateSpec:
    return TemplateSpec(
        type=row.type,
        category=row.category,
        description=row.description,
        variables=tuple(row.variables),
        title=row.title,
        message=row.message,
        html=row.html,
    )


async def seed_templates(db: AsyncSession) -> int:
    """Insert the shipped templates that are missing and update those nobody edited whose file
    changed. Returns how many rows were written. Idempotent."""
    rows = {row.type: row for row in (await db.scalars(select(NotificationTemplate))).all()}
    written = 0
    for spec in file_templates().values():
        row = rows.get(spec.type)
        if row is None:
            row = NotificationTemplate(type=spec.type)
            db.add(row)
        elif row.edited_by is not None or row.source_hash == spec.source_hash:
            continue
        row.category, row.description, row.variables = spec.category, spec.description, list(spec.variables)
        row.title, row.message, row.html = spec.title, spec.message, spec.html
        row.source_hash = spec.source_hash
        written += 1
    await db.flush()
    return written


async def templates_by_type(db: AsyncSession, types: Iterable[str]) -> dict[str, TemplateSpec]:
    """The stored templates of ``types``, falling back to the shipped file for one not seeded yet."""
    wanted = set(types)
    found = {
        row.type: spec_of(row)
        for row in (
            await db.scalars(select(NotificationTemplate).where(NotificationTemplate.type.in_(wanted)))
        ).all()
    }
    shipped = file_templates()
    for missing in wanted - found.keys():
        if missing in shipped:
            found[missing] = shipped[missing]
    return found


def check_variables(spec: TemplateSpec, variables: Mapping[str, Any]) -> None:
    """A 422 unless ``variables`` are exactly the template's declared ones."""
    given, declared = set(variables), set(spec.variables)
    if given != declared:
        raise ValidationFailed(
            f"template {spec.type!r} takes exactly the variables it declares",
            code="template_variables_invalid",
            details={
                "template": spec.type,
                "missing": sorted(declared - given),
                "unknown": sorted(given - declared),
            },
        )


def render(spec: TemplateSpec, variables: Mapping[str, Any]) -> Rendered:
    check_variables(spec, variables)
    context = dict(variables)
    title = " ".join(_text.from_string(spec.title).render(context).split())[:TITLE_MAX]
    message = _text.from_string(spec.message).render(context).strip()
    html = _html.from_string(spec.html).render(context) if spec.html else ""
    return Rendered(title=title, message=message, html=html)
