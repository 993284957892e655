# kubemacpool container image, for machines with a Docker (or BuildKit /
# Podman) daemon:
#
#   docker build -t kubemacpool:dev .
#
# Without a daemon, `make image` builds an equivalent image with
# hack/image (see docs/image.md).

# Build stage: a fully static binary, so the final image needs no libc.
FROM golang:1.26 AS build
WORKDIR /src
# Download modules in their own layer so source edits do not refetch them.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o /kubemacpool ./cmd/kubemacpool

# Final stage: distroless static carries only CA certificates, tzdata,
# /etc/passwd with the nonroot user and /tmp -- nothing to exec into.
FROM gcr.io/distroless/static:nonroot
COPY --from=build /kubemacpool /kubemacpool
# The numeric id (not the name) lets the kubelet verify runAsNonRoot.
USER 65532:65532
ENTRYPOINT ["/kubemacpool"]
