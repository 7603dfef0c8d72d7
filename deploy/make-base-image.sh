#!/usr/bin/env bash
# Makes the base images deploy/Dockerfile builds FROM without a registry: a debootstrap minbase
# root filesystem of Debian 12 from Debian's mirror, imported into podman's local storage as
#   debian:bookworm        the root filesystem with apt's package lists and downloaded .debs removed
#                          (the build stage's base)
#   debian:bookworm-slim   the same less documentation, manuals and translations, with a dpkg
#                          configuration that keeps packages installed later from adding them back
#                          (the runtime stage's base)
# Each is also tagged docker.io/library/<name>, so a FROM line finds it whatever podman's short-name
# settings are. Both are what Docker Hub's images of those names hold, made from the mirror.
#
#   usage: make-base-image.sh [--force]     (as root; MIRROR=... picks another Debian mirror)
#
# An image that already exists is kept, unless --force. debootstrap runs under `nice -n 19`.
# Needs debootstrap and podman (deploy/install-deps.sh), about 210 MB in a temporary directory under
# /var/tmp and 200 MB in podman's storage (121 MB and 78 MB images). Exits 1 with the reason when
# something fails.
set -euo pipefail
MIRROR="${MIRROR:-http://deb.debian.org/debian}"
force=0
case "${1:-}" in
  "") ;;
  --force) force=1 ;;
  *) echo "usage: $0 [--force]" >&2; exit 2 ;;
esac
fail() { echo "make-base-image: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || fail "needs root (debootstrap creates device nodes and root-owned files)"
command -v podman >/dev/null || fail "podman missing (deploy/install-deps.sh installs it)"

missing=()
for name in debian:bookworm debian:bookworm-slim; do
  if [ "$force" -eq 1 ] || ! podman image exists "$name"; then missing+=("$name"); fi
done
if [ "${#missing[@]}" -eq 0 ]; then
  echo "make-base-image: debian:bookworm and debian:bookworm-slim exist (--force remakes them)"
  exit 0
fi
command -v debootstrap >/dev/null || fail "debootstrap missing (deploy/install-deps.sh installs it)"

work="$(mktemp -d /var/tmp/make-base-image.XXXXXX)"
trap 'rm -rf "$work"' EXIT
trap 'exit 1' INT TERM HUP
root="$work/rootfs"
echo "make-base-image: debootstrap --variant=minbase bookworm from $MIRROR"
if ! nice -n 19 debootstrap --variant=minbase bookworm "$root" "$MIRROR" >"$work/debootstrap.log" 2>&1; then
  tail -n 20 "$work/debootstrap.log" >&2
  fail "debootstrap failed (log above)"
fi
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/archives/*.deb "$root"/var/cache/apt/*.bin

import() {  # import NAME: the root filesystem as image NAME, also tagged docker.io/library/NAME
  tar --numeric-owner -C "$root" -c . |
    podman import --quiet --change 'CMD ["bash"]' --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      - "$1" >/dev/null
  podman tag "$1" "docker.io/library/$1"
  echo "make-base-image: $1: $(podman image inspect --format '{{.Size}}' "$1") bytes"
}
for name in "${missing[@]}"; do
  if [ "$name" = debian:bookworm ]; then import debian:bookworm; fi
done

# The slim variant: the paths Docker Hub's slim images exclude, removed now and excluded for every
# package installed later (copyright files and locale.alias stay).
cat >"$root/etc/dpkg/dpkg.cfg.d/slim" <<'EOF'
# Slim image: documentation, manuals and translations are not installed.
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/overrides/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
find "$root/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
find "$root/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
rm -rf "$root"/usr/share/man/* "$root"/usr/share/groff/* "$root"/usr/share/info/* \
  "$root"/usr/share/lintian/overrides/*
for name in "${missing[@]}"; do
  if [ "$name" = debian:bookworm-slim ]; then import debian:bookworm-slim; fi
done
