# rtmpd in a container: `docker build -t rtmpd .` then
# `docker run -d --name rtmpd -p 1935:1935 -p 8501:8501 -p 8000:8000 -v rtmpd-data:/var/lib/rtmpd rtmpd`.
# Build stage: the release binary with the player libraries embedded (make release runs npm ci first).
# Runtime stage: Debian slim, the binary alone (it needs no other file), a non-root user, the data dir as a
# volume. Not built in CI (no Docker daemon there); deploy/check.sh checks what can be checked without one.
FROM rust:1-bookworm AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends npm \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN make release

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --home-dir /var/lib/rtmpd --create-home --shell /usr/sbin/nologin rtmpd
COPY --from=build /src/target/release/rtmpd /usr/local/bin/rtmpd
USER rtmpd
WORKDIR /var/lib/rtmpd
VOLUME /var/lib/rtmpd
# RTMP, HTTP (live FLV, WS-FLV, API, files), web (pages and files).
EXPOSE 1935 8501 8000
# No curl in the slim image: bash's /dev/tcp asks /api/server and wants a 200.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/8501 && printf 'GET /api/server HTTP/1.0\\r\\n\\r\\n' >&3 && head -1 <&3 | grep -q ' 200 '"]
# Ctrl-C's signal: every player is ended and every recording finalised before the exit.
STOPSIGNAL SIGINT
ENTRYPOINT ["rtmpd"]
CMD ["--data-dir", "/var/lib/rtmpd"]
