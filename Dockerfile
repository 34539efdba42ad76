# teleport-sync in a container: the daemon as a non-root user, for a NAS or a small server.
#   docker build -t teleport-sync .
#   docker compose -f deploy/docker-compose.yml up -d      (volumes, secret, metrics port)
#
# Volumes: /etc/teleport-sync (config.toml, read-only), /var/lib/teleport-sync (the journal:
# one per station, never shared), /inbox (the watch folder), /results (the models).
# The client secret comes from a file, never the environment: a Docker secret named
# `client_secret` appears as /run/secrets/client_secret, read as $CREDENTIALS_DIRECTORY/client_secret
# (mode 0600 and owned by the container's user, as the daemon refuses secrets others can read).

# The base: the official Python image. Any Debian bookworm image with Python 3.11 and pip (and
# pip free to install outside a venv) serves: the test suite, where no image registry is
# reachable, builds on a stand-in made from Debian's own packages (tests/container_engine.py):
#   docker build --build-arg BASE=localhost/teleport-sync-base:bookworm ...
ARG BASE=python:3.11-slim-bookworm

# Build the wheel apart, so the image carries neither the sources nor the build tools.
FROM ${BASE} AS build
# A C compiler for the optional MD5 lanes kernel (src/teleport_sync/api/_md5lanes.c: parts'
# ETag checks several times faster); only in this stage, the image carries none. Debian's
# current gcc is what is wanted, not a pinned build of it.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM ${BASE}
# A fixed uid (10001), so files on bind mounts (the secret, the results folder) can be given
# to it: `chown 10001:10001`.
RUN groupadd --system --gid 10001 teleport-sync \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
        --home-dir /var/lib/teleport-sync --shell /usr/sbin/nologin teleport-sync \
    && install -d -m 0700 -o teleport-sync -g teleport-sync /var/lib/teleport-sync \
    && install -d -m 0755 -o teleport-sync -g teleport-sync /inbox /results \
    && install -d -m 0755 /etc/teleport-sync
COPY --from=build /wheels /tmp/wheels
# With the preflight extra (numpy, Pillow, PyAV: wheels that bring their own codecs), as the
# README's first command installs it: photos and frames are checked before money is spent.
# `--build-arg EXTRAS=` leaves it out (the image is then ~230 MB smaller, and `health` says
# pre-flight is off for want of it). The pose extra (pycolmap) is not in the image: its
# check is reported as not installed.
# The wheel is this project's own, its dependencies bounded by its pyproject.toml.
ARG EXTRAS=preflight
# hadolint ignore=DL3013
RUN wheel="$(find /tmp/wheels -name 'teleport_sync-*.whl')" \
    && pip install --no-cache-dir "${wheel}${EXTRAS:+[${EXTRAS}]}" \
    && rm -rf /tmp/wheels

# STATE_DIRECTORY puts the journal in its volume (as systemd's StateDirectory= does);
# CREDENTIALS_DIRECTORY is where the daemon looks for `client_secret` (and `webhook_secret`).
# The environment wins over config.toml: to watch more folders, mount them and set
# TELEPORT_SYNC_WATCH__PATHS to a JSON list of them (or add [[watch.folder]] tables).
ENV TELEPORT_SYNC_CONFIG=/etc/teleport-sync/config.toml \
    STATE_DIRECTORY=/var/lib/teleport-sync \
    CREDENTIALS_DIRECTORY=/run/secrets \
    TELEPORT_SYNC_WATCH__PATHS='["/inbox"]' \
    TELEPORT_SYNC_RESULTS__DIR=/results \
    TELEPORT_SYNC_LOG__FORMAT=json \
    PYTHONUNBUFFERED=1
VOLUME ["/etc/teleport-sync", "/var/lib/teleport-sync", "/inbox", "/results"]
USER 10001:10001
WORKDIR /var/lib/teleport-sync
# Prometheus metrics, when [metrics] listen is "0.0.0.0:9464" (the compose example sets it).
EXPOSE 9464
# Healthy = the daemon runs, authentication works and every watch folder is watched.
HEALTHCHECK --interval=60s --timeout=30s --start-period=60s --retries=3 \
    CMD ["teleport-sync", "health"]
# SIGTERM: parts in flight finish (each acknowledged part is journaled) and it exits 0.
STOPSIGNAL SIGTERM
ENTRYPOINT ["teleport-sync"]
CMD ["run"]
