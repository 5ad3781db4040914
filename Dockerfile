# syntax=docker/dockerfile:1
# Build stage: a wheel of warnd and its dependencies. The context is what .dockerignore
# lets through (no .venv, .git, tests, caches or local databases).
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY warnd ./warnd
COPY channels ./channels
COPY templates ./templates
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

# Runtime stage: no compiler, no sources, a non-root user.
FROM python:3.11-slim
RUN useradd --system --uid 10001 --home-dir /var/lib/warnd --create-home warnd
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
COPY deploy/healthcheck.py /usr/local/lib/warnd/healthcheck.py
# The data directory is a volume and the working directory: the SQLite database (the
# default, here an absolute path into it) and anything else warnd keeps on disk outlive
# the container. With PostgreSQL (database_url or WARND_DATABASE_URL) it stays empty.
COPY config/warnd.example.yaml /etc/warnd/warnd.yaml
RUN sed -i 's|^database_url: .*|database_url: sqlite:////var/lib/warnd/data/warnd.db|' /etc/warnd/warnd.yaml \
 && grep -q '^database_url: sqlite:////var/lib/warnd/data/warnd.db$' /etc/warnd/warnd.yaml \
 && mkdir -p /var/lib/warnd/data && chown warnd:warnd /var/lib/warnd/data
VOLUME /var/lib/warnd/data
USER warnd
WORKDIR /var/lib/warnd/data
ENV WARND_CONFIG=/etc/warnd/warnd.yaml \
    PYTHONUNBUFFERED=1
EXPOSE 8080
# The check asks /readyz on the port the configuration names (config file or WARND_PORT),
# not a fixed 8080: see deploy/healthcheck.py.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "/usr/local/lib/warnd/healthcheck.py"]
ENTRYPOINT ["warnd"]
CMD ["serve", "--host", "0.0.0.0"]
