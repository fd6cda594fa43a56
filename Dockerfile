# Multi-stage build: compile in the Rust image, run from a slim Debian as a non-root user.
# (Not built in CI: this workplace has no Docker engine; see the issue notes.)
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
COPY certs ./certs
COPY config.toml ./
RUN cargo build --release --locked --bin portcullis

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin portcullis
COPY --from=build /src/target/release/portcullis /usr/local/bin/portcullis
COPY config.toml /etc/portcullis/config.toml
USER 10001:10001
EXPOSE 8443 9901
ENTRYPOINT ["/usr/local/bin/portcullis"]
CMD ["run", "--config", "/etc/portcullis/config.toml", "--listen", "0.0.0.0:8443"]
