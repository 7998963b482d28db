# StatsYard in a container; see docs/service.md ("Running in a container").
#
#   docker build -t statsyard .
#   docker run -d --name statsyard -v statsyard-data:/var/lib/statsyard \
#       -p 2003:2003/tcp -p 2003:2003/udp -p 8080:8080 statsyard
#
# `docker stop` sends SIGTERM: the service drains and writes everything it
# accepted, then exits 0. Give it time: `docker stop -t 90`.

FROM python:3.12-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY statsyard ./statsyard
RUN python -m venv /opt/statsyard \
    && /opt/statsyard/bin/pip install --no-cache-dir .

FROM python:3.12-slim
RUN groupadd --system statsyard \
    && useradd --system --gid statsyard --home-dir /var/lib/statsyard \
        --shell /usr/sbin/nologin statsyard \
    && install -d -o statsyard -g statsyard -m 0750 /var/lib/statsyard
COPY --from=build /opt/statsyard /opt/statsyard
# Listen on every interface of the container (the defaults are 127.0.0.1),
# keep the data in the volume. Any setting can be changed the same way
# (STATSYARD_<SECTION>_<KEY>, see docs/service.md), e.g.
# -e STATSYARD_METRICS_HOST=datadog-agent -e STATSYARD_LOGGING_FORMAT=json.
ENV PATH=/opt/statsyard/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    STATSYARD_STORAGE_DATA_DIR=/var/lib/statsyard/data \
    STATSYARD_GRAPHITE_HOST=0.0.0.0 \
    STATSYARD_HTTP_HOST=0.0.0.0
USER statsyard
WORKDIR /var/lib/statsyard
VOLUME ["/var/lib/statsyard"]
# Graphite plaintext (TCP and UDP), HTTP API.
EXPOSE 2003/tcp 2003/udp 8080/tcp
STOPSIGNAL SIGTERM
ENTRYPOINT ["statsyard"]
CMD ["run"]
