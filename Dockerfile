# syntax=docker/dockerfile:1
#
# The audit-shipper image: one static binary on distroless "static" (no
# shell, no package manager; CA certificates, tzdata and a nonroot user
# 65532 are all it holds).
#
#   docker build \
#     --build-arg VERSION=$(git describe --tags --always --dirty) \
#     --build-arg REVISION=$(git rev-parse HEAD) \
#     --build-arg CREATED=$(date -u +%Y-%m-%dT%H:%M:%SZ) \
#     -t registry.example.com/audit-shipper:$(git describe --tags --always) .
#
# The image runs as 65532 by default. The Kubernetes manifests override that
# with runAsUser: 0 and every capability but DAC_READ_SEARCH dropped,
# because kube-apiserver writes the audit log as root with mode 0600 and a
# non-root container process cannot hold a capability (docs/deploy-rke2.md,
# "Why root with one capability").
#
# deploy/test/dockerfile_test.go checks this file and runs its go build
# line on the files .dockerignore lets through.

ARG GO_VERSION=1.26

# The build runs on the builder's own platform and cross-compiles, so a
# multi-platform build (--platform linux/amd64,linux/arm64) needs no
# emulation.
FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS build
ARG TARGETOS=linux
ARG TARGETARCH=amd64
ARG VERSION=devel
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
# CGO off: a static binary that needs no libc in the final image.
# -trimpath: no build-machine paths in the binary, so builds are reproducible.
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} \
    go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" \
      -o /out/audit-shipper ./cmd/audit-shipper

FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=devel
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="audit-shipper" \
      org.opencontainers.image.description="Ships Kubernetes audit logs (kube-apiserver, RKE2) to Loki and Elasticsearch without losing an event" \
      org.opencontainers.image.source="https://github.com/audit-shipper/audit-shipper" \
      org.opencontainers.image.url="https://github.com/audit-shipper/audit-shipper" \
      org.opencontainers.image.documentation="https://github.com/audit-shipper/audit-shipper/blob/main/docs/deploy-rke2.md" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}"
COPY --from=build /out/audit-shipper /usr/local/bin/audit-shipper
USER 65532:65532
# /metrics, /healthz, /readyz (metrics.listen).
EXPOSE 9464
ENTRYPOINT ["/usr/local/bin/audit-shipper"]
CMD ["run", "--config", "/etc/audit-shipper/config.yaml"]
