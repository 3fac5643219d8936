# The one moss binary, built in a Rust image and run from a slim Debian image.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p moss

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --home /var/lib/moss --create-home moss
COPY --from=build /src/target/release/moss /usr/local/bin/moss
USER moss
WORKDIR /var/lib/moss
ENV MOSS_DATA_DIR=/var/lib/moss/data
ENTRYPOINT ["moss"]
CMD ["--help"]
