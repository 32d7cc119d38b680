# The one image of Bazaar: the same image runs the API (default), the worker and the migrations.
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
RUN uv sync --locked --no-dev --no-cache

# var/ holds local state (a generated JWT secret when JWT_SECRET is unset outside production).
RUN useradd --create-home --uid 10001 bazaar && mkdir -p var && chown bazaar:bazaar var
USER bazaar

EXPOSE 8000
CMD ["bazaar", "serve", "--host", "0.0.0.0"]
