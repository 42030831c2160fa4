#!/usr/bin/env bash
# The execution environment of ee/execution-environment.yml (docs/operations-awx.md).
#
#   scripts/ee.sh create    the build context, in .cache/ee-context (no image, no registry)
#   scripts/ee.sh build TAG the image too, with podman or docker (pulls the base image)
#
# Either way the collection is built first (ansible-galaxy collection build) and goes into the
# context as pool-ops.tar.gz. ansible-builder comes from the docs venv (scripts/docs.sh).
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
action="${1:-}"
case "$action" in
create) ;;
build) [ -n "${2:-}" ] || { echo "ee: build needs an image tag, e.g. pool-ops-ee:0.2.0" >&2; exit 2; } ;;
*) echo "usage: scripts/ee.sh create | build TAG" >&2; exit 2 ;;
esac
builder="${ANSIBLE_BUILDER:-$root/.cache/docs-venv/bin/ansible-builder}"
[ -x "$builder" ] || { echo "ee: $builder missing: run scripts/docs.sh (make docs) first, it installs it" >&2; exit 1; }
galaxy="$(dirname "$builder")/ansible-galaxy"

tmp="$(mktemp -d "${TMPDIR:-/tmp}/pool-ee.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
cp "$root/ee/execution-environment.yml" "$tmp/"
"$galaxy" collection build --output-path "$tmp/build" "$root" >/dev/null
mv "$tmp"/build/pool-ops-*.tar.gz "$tmp/pool-ops.tar.gz"

context="$root/.cache/ee-context"
rm -rf "$context"
if [ "$action" = create ]; then
	"$builder" create -f "$tmp/execution-environment.yml" --context "$context" --output-filename Containerfile >/dev/null
	# What a build would start from: the Containerfile, the collection and its requirement.
	for f in Containerfile _build/pool-ops/pool-ops.tar.gz _build/requirements.yml; do
		[ -s "$context/$f" ] || { echo "ee: ansible-builder create made no $f" >&2; exit 1; }
	done
	grep -q "/tmp/pool-ops/pool-ops.tar.gz" "$context/_build/requirements.yml" ||
		{ echo "ee: the context's requirements.yml does not install the collection" >&2; exit 1; }
	echo "ee: build context in $context ($(du -sk "$context" | cut -f1) KiB)"
else
	"$builder" build -f "$tmp/execution-environment.yml" --context "$context" --tag "$2"
fi
