# gcp-kafka-auth-handler: a static (musl) binary in a distroless, non-root image.
#
#   docker build -t gcp-kafka-auth-handler .
#   docker run --rm -p 127.0.0.1:14293:14293 --user "$(id -u)" \
#     -v "$HOME/.config/gcloud/application_default_credentials.json:/adc.json:ro" \
#     -e GOOGLE_APPLICATION_CREDENTIALS=/adc.json gcp-kafka-auth-handler
#
# Inside the container it listens on 0.0.0.0 (a container's loopback is unreachable from
# outside it); publish the port on 127.0.0.1 only, as above, or any host that reaches the
# port gets Kafka tokens for these credentials.

FROM rust:1.95-bookworm AS build
# musl-tools: the C compiler aws-lc-sys (our crypto) needs for the musl target. Not pinned:
# the base image pins the Debian release, and exact revisions vanish with point releases.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# The builder's own architecture (x86_64 or aarch64, e.g. under buildx) picks the target.
RUN target="$(uname -m)-unknown-linux-musl" \
 && rustup target add "$target" \
 && cargo build --release --locked --target "$target" --bin gcp-kafka-auth-handler \
 && install -D -m 0755 "target/$target/release/gcp-kafka-auth-handler" /out/gcp-kafka-auth-handler

# distroless static: CA certificates, /etc/passwd with nonroot (65532), no shell, no libc.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/gcp-kafka-auth-handler /usr/local/bin/gcp-kafka-auth-handler
ENV GCP_KAFKA_AUTH_BIND=0.0.0.0 \
    GCP_KAFKA_AUTH_PORT=14293 \
    GCP_KAFKA_AUTH_LOG_FORMAT=json
EXPOSE 14293
# Numeric, so Kubernetes' runAsNonRoot can verify it.
USER 65532:65532
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
  CMD ["/usr/local/bin/gcp-kafka-auth-handler", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/gcp-kafka-auth-handler"]
CMD ["serve"]
