#!/usr/bin/env bash
# Builds stand-ins for the public images this project runs (python, postgres, redis, rabbitmq)
# from Debian packages, for a Docker engine that cannot reach an image registry, and tags them
# with the official names that Dockerfile and docker-compose*.yml use, in this engine only.
#
# Once per machine: a stand-in is tagged articles-standin/<name>:<hash of this directory>, and a
# build whose tag exists is skipped. An official name that already holds a real image (one
# without our label) is left alone: where the registry was reachable, the real images are used.
#
#   docker/standins/build.sh            build what is missing, then tag
#   DEBIAN_MIRROR=http://... build.sh   mirror for debootstrap (default: the host's apt mirror)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
LABEL=org.articles-worker.standin
BASE=articles-standin/debian:bookworm
# Names used by tests but by no Dockerfile or compose file: pytest-celery's RabbitMQ broker.
EXTRA_REFS="rabbitmq:3-management"

log() { printf 'standins: %s\n' "$*" >&2; }

host_mirror() {
  # The first Debian URI the host's apt uses (deb822 or one-line format).
  local uri
  uri=$(grep -hsE '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' | grep -v security | head -1)
  [ -n "$uri" ] || uri=$(grep -hsE '^deb ' /etc/apt/sources.list | awk '{print $2}' | head -1)
  echo "${uri:-http://deb.debian.org/debian}"
}

# The host's extra CA certificates: an egress proxy that re-signs TLS (as on CI machines) must be
# trusted inside the python stand-in too, or `pip install .` cannot reach PyPI.
extra_cas() { find /usr/local/share/ca-certificates -name '*.crt' -type f 2>/dev/null | sort; }

source_hash() {
  { (cd "$here" && find . -type f ! -name '*.md' | sort | xargs sha256sum)
    extra_cas | xargs -r sha256sum; } | sha256sum | cut -c1-12
}

have_image() { docker image inspect "$1" >/dev/null 2>&1; }

build_base() {
  if have_image "$BASE"; then return; fi
  command -v debootstrap >/dev/null || { log "debootstrap is missing (apt-get install debootstrap)"; exit 1; }
  local dir mirror
  dir=$(mktemp -d /var/tmp/standin-rootfs.XXXXXX)
  mirror=${DEBIAN_MIRROR:-$(host_mirror)}
  log "debootstrap bookworm from $mirror (a few minutes, once per machine)"
  debootstrap --variant=minbase bookworm "$dir" "$mirror" >/dev/null
  tar -C "$dir" -c . | docker import --change "LABEL $LABEL=debian" - "$BASE" >/dev/null
  rm -rf "$dir"
}

build_standin() {
  local name=$1 tag=$2 ctx
  if have_image "$tag"; then log "$tag present"; return; fi
  ctx=$(mktemp -d)
  cp -a "$here/$name/." "$ctx/"
  mkdir -p "$ctx/extra-ca" && touch "$ctx/extra-ca/.keep"
  extra_cas | xargs -r -I{} cp {} "$ctx/extra-ca/"
  log "building $tag"
  if ! docker build --build-arg "BASE=$BASE" --label "$LABEL=$name" -t "$tag" "$ctx" \
      >"$ctx.log" 2>&1; then
    tail -30 "$ctx.log" >&2
    rm -rf "$ctx" "$ctx.log"
    exit 1
  fi
  rm -rf "$ctx" "$ctx.log"
}

# The official references this repository uses, one per line (FROM lines and compose images).
official_refs() {
  { grep -hoE '^FROM[[:space:]]+[^[:space:]]+' "$root"/Dockerfile* | awk '{print $2}'
    grep -hoE '^[[:space:]]*image:[[:space:]]*[^[:space:]]+' "$root"/docker-compose*.yml | awk '{print $2}'
  } | tr -d '"'"'" | sort -u
}

tag_official() {
  local ref=$1 hash=$2 name=${1%%:*} current
  case "$name" in python|postgres|redis|rabbitmq) ;; *) return ;; esac
  if have_image "$ref"; then
    current=$(docker image inspect -f "{{ index .Config.Labels \"$LABEL\" }}" "$ref")
    if [ -z "$current" ]; then log "$ref is a real image here: kept"; return; fi
  fi
  docker tag "articles-standin/$name:$hash" "$ref"
  log "$ref -> articles-standin/$name:$hash"
}

drop_stale() {
  # Earlier builds of this stand-in (another hash) are no longer used: untag them.
  local name=$1 hash=$2 ref
  for ref in $(docker image ls --format '{{.Repository}}:{{.Tag}}' "articles-standin/$name"); do
    [ "$ref" = "articles-standin/$name:$hash" ] || docker rmi "$ref" >/dev/null 2>&1 || true
  done
}

main() {
  docker info >/dev/null 2>&1 || { log "no Docker engine answers"; exit 1; }
  local hash name ref
  hash=$(source_hash)
  build_base
  for name in python postgres redis rabbitmq; do
    build_standin "$name" "articles-standin/$name:$hash"
  done
  for ref in $(official_refs) $EXTRA_REFS; do tag_official "$ref" "$hash"; done
  for name in python postgres redis rabbitmq; do drop_stale "$name" "$hash"; done
  echo "$hash"
}

main
