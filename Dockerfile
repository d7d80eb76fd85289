# One image for every gateway process (api, worker, beat, flower, migrate); docker-compose.yml
# picks the command. Build with `--build-arg WITH_NODE=1` to add Node.js, which stdio MCP servers
# such as @modelcontextprotocol/server-everything (package.json) need in the worker.
FROM python:3.11-slim

ARG WITH_NODE=0
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Optional: Node.js and npm for stdio servers run with node/npx (Debian's packages).
RUN if [ "$WITH_NODE" = "1" ]; then \
      apt-get update \
      && apt-get install -y --no-install-recommends nodejs npm \
      && rm -rf /var/lib/apt/lists/*; \
    fi

COPY pyproject.toml README.md ./
COPY api ./api
COPY common ./common
COPY workers ./workers
RUN pip install .

COPY alembic.ini Procfile gunicorn.conf.py ./
COPY migrations ./migrations
COPY package.json package-lock.json ./
RUN if [ "$WITH_NODE" = "1" ]; then npm ci --omit=dev --no-audit --no-fund; fi

RUN useradd --create-home --uid 10001 gateway && mkdir -p /app/run && chown gateway /app/run
USER gateway

EXPOSE 3100 5555
CMD ["gunicorn", "-k", "gthread", "--threads", "32", "--bind", "0.0.0.0:3100", \
     "--timeout", "150", "--graceful-timeout", "30", "api.app:create_app()"]
