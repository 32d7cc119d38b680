# The one image of Bazaar: the same image runs the API (default), the worker, the migrations and
# the Dagster webserver and daemon.
#   docker build -t bazaar .
#   docker run --rm -e DATABASE_URL=... -e REDIS_URL=... -e JWT_SECRET=... -p 8000:8000 bazaar
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    UV_PROJECT_ENVIRONMENT=/opt/venv \
    UV_PYTHON_DOWNLOADS=never \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    PATH=/opt/venv/bin:$PATH

RUN pip install --no-cache-dir uv==0.13.8

WORKDIR /srv/bazaar

# Dependencies first, from the lock file: this layer is reused until pyproject.toml or uv.lock change.
COPY pyproject.toml uv.lock ./
RUN uv sync --locked --no-dev --no-install-project --no-cache

# Then the project itself. It stays an editable install: `bazaar db upgrade` finds alembic.ini
# and migrations/ next to the app/ package.
COPY README.md alembic.ini ./
COPY migrations/ migrations/
COPY app/ app/
COPY pipelines/ pipelines/
COPY dbt/ dbt/
COPY widget/ widget/
RUN uv sync --locked --no-dev --no-cache

# The dbt manifest the Dagster code location loads, made once here rather than at every start.
RUN WAREHOUSE_DIR=/tmp/warehouse dbt parse --quiet --project-dir dbt --profiles-dir dbt

# var/ holds local state (a generated JWT secret when JWT_SECRET is unset outside production,
# the Dagster instance under var/dagster); warehouse/ the landing files and DuckDB files (a
# volume shared by the worker, the API and Dagster), including build/dbt-target, dbt's artifacts
# and partial-parse state reused by every build of that warehouse.
RUN useradd --create-home --uid 10001 bazaar \
    && mkdir -p var/dagster warehouse/landing warehouse/build warehouse/serve \
    && chown -R bazaar:bazaar var warehouse dbt
ENV WAREHOUSE_DIR=/srv/bazaar/warehouse \
    DAGSTER_HOME=/srv/bazaar/var/dagster
USER bazaar

EXPOSE 8000
CMD ["bazaar", "serve", "--host", "0.0.0.0"]
