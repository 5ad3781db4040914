# syntax=docker/dockerfile:1
# Build stage: a wheel of warnd and its dependencies.
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
COPY config/warnd.example.yaml /etc/warnd/warnd.yaml
USER warnd
WORKDIR /var/lib/warnd
ENV WARND_CONFIG=/etc/warnd/warnd.yaml
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/readyz', timeout=2).status == 200 else 1)"
ENTRYPOINT ["warnd"]
CMD ["serve", "--host", "0.0.0.0"]
