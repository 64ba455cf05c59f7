# The greendc image: the collector, the simulator and the rules builder all run from it.
#   docker build -t greendc:local .
#   docker run --rm greendc:local check-config /etc/greendc/greendc.yaml
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MPLCONFIGDIR=/tmp/matplotlib

# A fixed uid/gid so the owner of named volumes is predictable across rebuilds.
RUN groupadd --system --gid 10001 greendc \
 && useradd --system --uid 10001 --gid greendc --home-dir /var/lib/greendc \
      --shell /usr/sbin/nologin greendc

WORKDIR /src
COPY pyproject.toml README.md ./
COPY greendc ./greendc
COPY collector ./collector
COPY exporters ./exporters
COPY dashboards ./dashboards
COPY simulator ./simulator
# A non-editable install: the source tree is removed so only the installed package runs.
RUN pip install . && rm -rf /src

# The spool and generated rules live in named volumes mounted here; Docker copies this
# ownership into an empty volume on first mount, so the non-root user can write to it.
RUN mkdir -p /var/lib/greendc/spool /var/lib/greendc/rules /etc/greendc \
 && chown -R greendc:greendc /var/lib/greendc
WORKDIR /var/lib/greendc
USER greendc:greendc

EXPOSE 9108
ENTRYPOINT ["greendc"]
CMD ["--help"]
