# aura-otel's server (and CLI) in a small image; used by docker-compose.yml.
FROM python:3.11.13-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    AURA_OTEL_JOBS_DIR=/jobs

WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
# The postgres extra: the compose file's `postgres` profile points both services at PostgreSQL.
RUN pip install '.[postgres]' && useradd --system --uid 10001 --home-dir /nonexistent aura \
    && mkdir -p /jobs && chown aura /jobs

USER aura
WORKDIR /jobs
EXPOSE 8765
# Binding every interface needs AURA_OTEL_ACCESS_TOKEN (the server refuses otherwise).
CMD ["aura-otel", "serve", "--host", "0.0.0.0", "--port", "8765"]
