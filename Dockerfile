# Herald: one image with both binaries, herald-controller and herald-speaker.
#
#   docker build -t herald:dev .
#
# The controller runs as an unprivileged user (the chart sets runAsUser 65532, a read-only
# root filesystem and no capabilities); the speaker needs NET_ADMIN/NET_RAW and the `nft`
# binary for its forwarding rules, hence nftables in the runtime stage.

# ---- build ---------------------------------------------------------------------------
FROM rust:1-bookworm AS build
WORKDIR /src
# The whole workspace (every member's manifest is needed to resolve it).
COPY . .
RUN cargo build --locked --release -p herald-controller -p herald-speaker \
 && install -D -m 0755 target/release/herald-controller /out/herald-controller \
 && install -D -m 0755 target/release/herald-speaker /out/herald-speaker

# ---- runtime -------------------------------------------------------------------------
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends nftables ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/herald-controller /out/herald-speaker /usr/local/bin/
# The controller's default; the speaker's pod spec runs it as root with the capabilities
# it needs.
USER 65532:65532
EXPOSE 7472 7473
ENTRYPOINT ["/usr/local/bin/herald-controller"]
