# One image for every AFS command: `docker run IMAGE worker`, `docker run IMAGE simulate ...`.
# Point it at a Kafka cluster with AFS_* variables (see README); it runs as a non-root user.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /opt/afs
COPY pyproject.toml README.md LICENSE ./
COPY afs ./afs
COPY sandbox ./sandbox
COPY filters ./filters
RUN pip install . && useradd --create-home --uid 10001 afs && mkdir -p /var/lib/afs && chown afs /var/lib/afs

USER afs
ENV AFS_FILTERS_DIR=/opt/afs/filters AFS_ARCHIVE_DIR=/var/lib/afs/archive
VOLUME /var/lib/afs
ENTRYPOINT ["afs"]
CMD ["worker"]
