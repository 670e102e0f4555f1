# One image for every AFS command, chosen by the command line:
#   docker run IMAGE worker        the stream worker (default)    /metrics, /healthz, /readyz on :9108
#   docker run IMAGE api           the scientists' HTTP API        :8000 (/healthz, /readyz, /metrics too)
#   docker run IMAGE ppdb serve    the PPDB mirror's owner         grpc+tcp on AFS_PPDB_LISTEN
# Configure with AFS_* variables (README, "Running in production"); it runs as an unprivileged user.
# `docker run IMAGE --log-level debug worker` overrides the log level.
FROM python:3.11-slim AS build

ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY afs ./afs
COPY sandbox ./sandbox
RUN python -m venv /opt/afs/venv && /opt/afs/venv/bin/pip install .

FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PATH=/opt/afs/venv/bin:$PATH
COPY --from=build /opt/afs/venv /opt/afs/venv
COPY filters /opt/afs/filters
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/afs --create-home afs

# A numeric user, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 10001:10001
WORKDIR /var/lib/afs
# Everything the service writes lives under /var/lib/afs (mount a volume); services listen on all
# interfaces inside the container; logs are JSON lines for the log pipeline.
ENV AFS_FILTERS_DIR=/opt/afs/filters \
    AFS_ARCHIVE_DIR=/var/lib/afs/archive \
    AFS_JOBS_DIR=/var/lib/afs/jobs \
    AFS_PPDB_PATH=/var/lib/afs/ppdb.duckdb \
    AFS_DATABASE_URL=sqlite:////var/lib/afs/afs.db \
    AFS_API_HOST=0.0.0.0 \
    AFS_WORKER_METRICS_HOST=0.0.0.0 \
    AFS_WORKER_METRICS_PORT=9108 \
    AFS_LOG_FORMAT=json
VOLUME /var/lib/afs
EXPOSE 8000 9108 8815
ENTRYPOINT ["afs", "--log-level", "info"]
CMD ["worker"]
