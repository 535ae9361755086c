# syntax=docker/dockerfile:1
#
# Airlock container image: a static binary on distroless, running as non-root.
#
#   docker build -t airlock --build-arg VERSION=$(git describe --always --dirty) .
#   docker run -d --name airlock -p 5000:5000 -p 127.0.0.1:5001:5001 \
#     -e AIRLOCK_ADMIN_TOKEN="$(openssl rand -hex 32)" -v airlock-data:/data airlock
#
# The image's config (/etc/airlock/airlock.yaml) listens on :5000 (registry) and
# :5001 (admin API, enabled only when AIRLOCK_ADMIN_TOKEN is set) and keeps its
# state and content under /data. Use your own config with
#   -v $PWD/airlock.yaml:/etc/airlock/airlock.yaml:ro
# and keep data_dir: /data in it.

ARG GO_VERSION=1.26.8

FROM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/airlock ./cmd/airlock
# The container's config, and an empty /data owned by the runtime user (a new
# named volume takes the ownership of the image's directory).
RUN mkdir -p /out/etc /out/data \
 && printf '%s\n' \
      '# Airlock in a container: see airlock.example.yaml for every key.' \
      'listen: ":5000"' \
      'data_dir: /data' \
      'admin:' \
      '  # Published ports decide who reaches it; the token comes from AIRLOCK_ADMIN_TOKEN.' \
      '  listen: ":5001"' \
      > /out/etc/airlock.yaml \
 && /out/airlock version

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/airlock /usr/local/bin/airlock
COPY --from=build /out/etc/airlock.yaml /etc/airlock/airlock.yaml
COPY --from=build --chown=65532:65532 /out/data /data
USER 65532:65532
VOLUME /data
EXPOSE 5000 5001
ENTRYPOINT ["airlock", "serve"]
CMD ["--config", "/etc/airlock/airlock.yaml"]
