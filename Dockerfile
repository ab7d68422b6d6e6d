# syntax=docker/dockerfile:1
#
# One image with every binary of the system, for the Helm chart in deploy/k8s/eventchat (which sets
# the command of each deployment) and for running a single binary by hand:
#
#   docker build -t eventchat:dev .
#   docker run --rm eventchat:dev gateway -help
#   docker run --rm -p 8080:8080 -e CHAT_ADDR=0.0.0.0:8080 -e CHAT_DATA_DIR=/data -v chat:/data eventchat:dev chatd
#
# Binaries in /usr/local/bin: gateway, presence, unread, archiver, chatctl, and chatd (the
# all-in-one with embedded NATS). Static (CGO off), so the final stage is distroless/static, running
# as the non-root user 65532. No ENTRYPOINT: the first argument names the binary.

ARG GO_VERSION=1.26

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS build
ARG TARGETOS
ARG TARGETARCH
WORKDIR /src
# Use the toolchain of this image; never download another one during the build.
ENV GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-buildvcs=false
COPY . .
# The module and build caches are BuildKit cache mounts: a rebuild after a source change downloads
# nothing and recompiles only what changed.
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    mkdir -p /out && \
    GOOS=${TARGETOS:-linux} GOARCH=${TARGETARCH:-amd64} go build -trimpath -ldflags "-s -w" -o /out/ \
      ./services/gateway/cmd/gateway \
      ./services/presence/cmd/presence \
      ./services/unread/cmd/unread \
      ./services/archiver/cmd/archiver \
      ./cmd/chatctl \
      ./cmd/chatd && \
    ls -l /out

FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=dev
LABEL org.opencontainers.image.title="eventchat" \
      org.opencontainers.image.description="Event-sourced chat on NATS JetStream: gateway, presence, unread, archiver, chatctl, chatd" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="https://github.com/eventchat/chat"
COPY --from=build /out/ /usr/local/bin/
# distroless "nonroot": uid/gid 65532, HOME /home/nonroot. Kubernetes pods set the same ids.
USER 65532:65532
# chatd's default CHAT_DATA_DIR is ./data: give it a writable place when run by hand.
WORKDIR /home/nonroot
EXPOSE 8080
