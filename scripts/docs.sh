#!/usr/bin/env bash
# The docs stage of `make test`: the changelog, the docsite, the execution environment, the alert rules.
#
#   - antsibull-changelog lints the fragments (changelogs/fragments) and changelog.yaml, and
#     CHANGELOG.md must be exactly what it generates from them (edit fragments, not the file);
#   - the docsite (docs/docsite: antsibull-docs' collection pages, built by Sphinx) builds with
#     every warning an error, into .cache/docsite/build/html;
#   - `ansible-builder create` makes the build context of the execution environment
#     (ee/execution-environment.yml) around the collection's built tarball, into
#     .cache/ee-context (images cannot be pulled here, so it is not built);
#   - the Prometheus alert rules (docs/alerts) pass `promtool check rules` and their own unit tests
#     (`promtool test rules`), with promtool from Debian's package (scripts/promtool.sh).
#
# The tools come pinned from docs/docsite/requirements.txt into .cache/docs-venv.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
venv="$root/.cache/docs-venv"
reqs="$root/docs/docsite/requirements.txt"
stamp="$venv/.requirements.sha256"
want="$(sha256sum "$reqs" | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
	"$root/scripts/make-venv.sh" "$venv"  # from the controller's Python, as .venv is
	# (pip's notes about index locations this machine lacks are left out)
	"$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$reqs" 2> >(grep -v '^WARNING: Location' >&2) ||
		{ echo "docs: pip install -r $reqs failed: check access to PyPI" >&2; exit 1; }
	echo "$want" >"$stamp"
fi
export PATH="$venv/bin:$PATH"
# The collection as the checkout has it (make links .cache/collections to it).
export ANSIBLE_COLLECTIONS_PATH="$root/.cache/collections"
[ -e "$ANSIBLE_COLLECTIONS_PATH/ansible_collections/pool/ops" ] || "$root/scripts/link-collection.sh" >/dev/null

tmp="$(mktemp -d "${TMPDIR:-/tmp}/pool-docs.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

echo "== changelog"
antsibull-changelog lint
antsibull-changelog generate --output "$tmp/CHANGELOG.md"
if ! diff -u CHANGELOG.md "$tmp/CHANGELOG.md"; then
	echo "docs: CHANGELOG.md is not what antsibull-changelog generates: run 'antsibull-changelog generate' (never edit it by hand)" >&2
	exit 1
fi
echo "CHANGELOG.md matches changelogs/changelog.yaml"

echo "== collection docs lint"
antsibull-docs lint-collection-docs --plugin-docs --skip-rstcheck .

echo "== docsite"
site="$root/.cache/docsite"
rm -rf "$site"
mkdir -p "$site/rst"
chmod og-w "$site/rst"  # antsibull-docs wants the folder writable by itself only
cp docs/docsite/index.rst "$site/rst/"
antsibull-docs --config-file docs/docsite/antsibull-docs.cfg collection --cleanup everything \
	--fail-on-error --use-current --dest-dir "$site/rst" pool.ops
sphinx-build -M html "$site/rst" "$site/build" -q -c docs/docsite -W --keep-going
echo "docsite: $site/build/html/index.html"

echo "== execution environment"
ANSIBLE_BUILDER="$venv/bin/ansible-builder" "$root/scripts/ee.sh" create

echo "== alert rules"
"$root/scripts/promtool.sh"
