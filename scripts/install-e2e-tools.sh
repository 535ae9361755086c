#!/usr/bin/env bash
# Install the real clients the e2e suite (e2e/clients_test.go) drives:
#   Debian packages: clamav-daemon (clamd, for the malware tests; they start
#   their own with a signature DB written at run time), skopeo, containerd (ctr), podman, docker.io (dockerd and
#   /usr/bin/docker), busybox-static (a static /bin/busybox for runnable test
#   images), postgresql (initdb/postgres under /usr/lib/postgresql/<major>/bin,
#   which internal/pgtest runs as throwaway servers; not on PATH),
#   apache2-utils (htpasswd -B, for the pull authentication tests),
#   curl (a non-Go TLS client for the mTLS tests, e2e/tls_test.go),
#   chromium (headless, for the web console's browser tests, e2e/console_test.go;
#   its libfontconfig1 brings fonts-dejavu-core, the text of their screenshots);
#   Go module proxy: crane, at the go-containerregistry version in go.mod;
#   the MinIO server (a real S3 implementation for the S3 content-store
#   tests), at a pinned version (a cold build takes ~3-5 min on 2 cores).
#   helm, at a pinned version (for e2e/helm_test.go).
# Idempotent: only what is missing is installed, and `apt-get update` runs
# only when a package is missing. Non-interactive (no stdin needed).
# Installing a package never starts its services for the tests: the tests
# run their own containerd/dockerd/postgres with config and data under temp
# dirs. (postgresql's postinst may create a "main" cluster; nothing uses it.)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

export DEBIAN_FRONTEND=noninteractive

sudo=()
if [ "$(id -u)" -ne 0 ]; then
  sudo=(sudo -n)
fi

# package:file that proves it is installed; file may be a glob (PostgreSQL's
# binaries live under a versioned dir), then any executable match will do.
pkgs=(
  skopeo:/usr/bin/skopeo
  containerd:/usr/bin/containerd
  podman:/usr/bin/podman
  docker.io:/usr/sbin/dockerd
  busybox-static:/bin/busybox
  'postgresql:/usr/lib/postgresql/*/bin/initdb'
  clamav-daemon:/usr/sbin/clamd
  apache2-utils:/usr/bin/htpasswd
  curl:/usr/bin/curl
  chromium:/usr/bin/chromium
)
need=()
for p in "${pkgs[@]}"; do
  pkg=${p%%:*} file=${p#*:}
  found=0
  for f in $file; do # unquoted on purpose: expands the glob
    if [ -x "$f" ]; then
      found=1
      break
    fi
  done
  if [ "$found" -eq 0 ] || ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
    need+=("$pkg")
  fi
done

if [ "${#need[@]}" -gt 0 ]; then
  echo "install-e2e-tools: installing ${need[*]}"
  # Do not let package scripts start containerd/docker on the host: the
  # tests start their own. policy-rc.d (exit 101) is Debian's way to say so;
  # it is removed again afterwards unless it was there before.
  rcd=/usr/sbin/policy-rc.d
  made_rcd=0
  if [ ! -e "$rcd" ]; then
    printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$rcd" >/dev/null
    "${sudo[@]}" chmod 755 "$rcd"
    made_rcd=1
  fi
  status=0
  {
    "${sudo[@]}" apt-get update -q </dev/null &&
      "${sudo[@]}" apt-get install -y -q --no-install-recommends \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
        "${need[@]}" </dev/null
  } || status=$?
  if [ "$made_rcd" -eq 1 ]; then
    "${sudo[@]}" rm -f "$rcd"
  fi
  [ "$status" -eq 0 ] || exit "$status"
else
  echo "install-e2e-tools: Debian packages already installed"
fi

# crane at the go-containerregistry version the module uses.
gobin="$(go env GOPATH)/bin"
want=$(go list -m -f '{{.Version}}' github.com/google/go-containerregistry 2>/dev/null || echo v0.22.1)
have=""
if [ -x "$gobin/crane" ]; then
  have=$("$gobin/crane" version 2>/dev/null || true)
fi
if [ "$have" != "$want" ] && [ "v$have" != "$want" ]; then
  echo "install-e2e-tools: installing crane $want into $gobin (had: ${have:-none})"
  GOFLAGS= go install "github.com/google/go-containerregistry/cmd/crane@$want" </dev/null
else
  echo "install-e2e-tools: crane $want already installed"
fi

# MinIO server, pinned: its module has no tagged releases on the proxy,
# only pseudo-versions. The installed version is read from the binary's
# build info (`minio --version` prints a release name, not the module
# version).
minio_version=v0.0.0-20260212201848-7aac2a2c5b7c
minio_have=""
if [ -x "$gobin/minio" ]; then
  minio_have=$(go version -m "$gobin/minio" 2>/dev/null | awk '$1 == "mod" && $2 == "github.com/minio/minio" {print $3}')
fi
if [ "$minio_have" = "$minio_version" ]; then
  echo "install-e2e-tools: minio $minio_version already installed"
else
  echo "install-e2e-tools: installing minio $minio_version into $gobin (had: ${minio_have:-none}; a cold build takes minutes)"
  GOFLAGS= go install "github.com/minio/minio@$minio_version" </dev/null
fi

# helm (the real CLI for e2e/helm_test.go: charts pushed to and pulled from
# an OCI registry), pinned. The installed version is read from the binary's
# build info: `helm version` of a `go install` build prints only "v3.22".
# A cold build takes ~2 min on 2 cores.
helm_version=v3.22.0
helm_have=""
if [ -x "$gobin/helm" ]; then
  helm_have=$(go version -m "$gobin/helm" 2>/dev/null | awk '$1 == "mod" && $2 == "helm.sh/helm/v3" {print $3}')
fi
if [ "$helm_have" = "$helm_version" ]; then
  echo "install-e2e-tools: helm $helm_version already installed"
else
  echo "install-e2e-tools: installing helm $helm_version into $gobin (had: ${helm_have:-none})"
  GOFLAGS= go install "helm.sh/helm/v3/cmd/helm@$helm_version" </dev/null
fi

# The newest installed major, as internal/pgtest picks it.
pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
echo "install-e2e-tools: skopeo $(skopeo --version | awk '{print $3}'), containerd $(containerd --version | awk '{print $3}'), podman $(podman --version | awk '{print $3}'), $(/usr/sbin/dockerd --version), crane $("$gobin/crane" version), minio $minio_version, helm $helm_version, postgres $("$pgbin/postgres" --version | awk '{print $3}') ($pgbin)"
