#!/usr/bin/env bash
# Re-create portal/static/vendor/ from the npm registry, with no build step.
#
#   deploy/vendor-frontend.sh            newest release inside each pinned range (an upgrade)
#   deploy/vendor-frontend.sh --locked   exactly the versions in VERSIONS.md, and fail if a
#                                        tarball's integrity differs from the recorded one
#
# After either, `git diff portal/static/vendor` is the whole upgrade (or, with --locked, should
# be empty: anything else means the committed files drifted from what npm publishes).
set -euo pipefail

# Ranges, not exact versions: a plain run takes the newest compatible release. Majors are chosen
# on purpose (htmx 4 is a rewrite; noVNC is pinned because its ES modules change between minors).
declare -A RANGE=(
  [htmx.org]='2.0'
  [htmx-ext-ws]='2'
  [@xterm/xterm]='6'
  [@xterm/addon-fit]='0.11'
  [@novnc/novnc]='1.7.0'
  [uplot]='1.6'
)
ORDER=(htmx.org htmx-ext-ws @xterm/xterm @xterm/addon-fit @novnc/novnc uplot)

root=$(cd "$(dirname "$0")/.." && pwd)
dest=$root/portal/static/vendor
versions=$dest/VERSIONS.md
locked=false
case "${1:-}" in
  --locked) locked=true ;;
  '') ;;
  *) echo "usage: $0 [--locked]" >&2; exit 2 ;;
esac

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

spec_for() {
  local pkg=$1
  if $locked; then
    # VERSIONS.md rows look like: | `htmx.org` | 2.0.11 | `sha512-...` |
    local v
    v=$(awk -F'|' -v p="\`$pkg\`" '{gsub(/ /,"",$2); gsub(/ /,"",$3)} $2==p {print $3}' "$versions")
    [[ -n $v ]] || { echo "$pkg is not in $versions" >&2; exit 1; }
    echo "$pkg@$v"
  else
    echo "$pkg@${RANGE[$pkg]}"
  fi
}

recorded_integrity() {
  awk -F'|' -v p="\`$1\`" '{gsub(/ /,"",$2)} $2==p {gsub(/[ `]/,"",$4); print $4}' "$versions"
}

specs=()
for pkg in "${ORDER[@]}"; do specs+=("$(spec_for "$pkg")"); done

# npm itself checks each tarball against the integrity the registry publishes for it.
(cd "$work" && npm pack --silent --json "${specs[@]}" > pack.json)

# One line per package: name, version, tarball file name, integrity.
node -e '
  for (const p of require(process.argv[1]))
    console.log([p.name, p.version, p.filename, p.integrity].join("\t"));
' "$work/pack.json" > "$work/packed.tsv"

if $locked; then
  while IFS=$'\t' read -r name version file integrity; do
    want=$(recorded_integrity "$name")
    if [[ $want != "$integrity" ]]; then
      echo "$name $version: integrity $integrity, VERSIONS.md says $want" >&2
      exit 1
    fi
  done < "$work/packed.tsv"
fi

while IFS=$'\t' read -r name version file integrity; do
  mkdir -p "$work/x/$name"
  tar -xzf "$work/$file" -C "$work/x/$name"
done < "$work/packed.tsv"

new=$work/vendor
mkdir -p "$new"

# take PACKAGE DIR FILE...: copy files from the unpacked package into vendor/DIR, keeping paths.
take() {
  local pkg=$1 dir=$2; shift 2
  local src=$work/x/$pkg/package
  for f in "$@"; do
    install -D -m 0644 "$src/$f" "$new/$dir/$f"
  done
}

take htmx.org htmx LICENSE
install -D -m 0644 "$work/x/htmx.org/package/dist/htmx.min.js" "$new/htmx/htmx.min.js"

take htmx-ext-ws htmx-ext-ws LICENSE
install -D -m 0644 "$work/x/htmx-ext-ws/package/dist/ws.min.js" "$new/htmx-ext-ws/ws.min.js"

take @xterm/xterm xterm LICENSE css/xterm.css lib/xterm.js
take @xterm/addon-fit xterm-addon-fit LICENSE lib/addon-fit.js

# noVNC's core imports vendor/pako relatively, so both keep their places beside each other.
# LICENSE.txt names the licence texts under docs/, so they come along.
novnc=$work/x/@novnc/novnc/package
(cd "$novnc" && find core vendor -type f -name '*.js' -o -type f -name LICENSE) | sort > "$work/novnc.files"
take @novnc/novnc novnc LICENSE.txt AUTHORS $(cd "$novnc" && ls docs/LICENSE.*) $(cat "$work/novnc.files")

# uPlot, for the usage graphs: its prebuilt single file (a global uPlot) and its stylesheet.
take uplot uplot LICENSE
for f in uPlot.iife.min.js uPlot.min.css; do
  install -D -m 0644 "$work/x/uplot/package/dist/$f" "$new/uplot/$f"
done

# Sourcemaps are not vendored, so drop the comments that point at them: browsers would fetch a
# 404, and Django's ManifestStaticFilesStorage refuses to collectstatic a missing referenced file.
find "$new" -name '*.js' -exec sed -i '/^\/\/# sourceMappingURL=/d' {} +

{
  echo '# Vendored front-end libraries'
  echo
  echo 'Re-created by `deploy/vendor-frontend.sh` from `npm pack`; do not edit these files by hand.'
  echo 'The integrity is that of the npm tarball (npm checks it against the registry).'
  echo 'Only change made: `//# sourceMappingURL=` lines are removed, as the maps are not vendored.'
  echo
  echo '| package | version | integrity | directory | licence |'
  echo '|---|---|---|---|---|'
  while IFS=$'\t' read -r name version file integrity; do
    # htmx-ext-ws declares no licence in package.json; its LICENSE file is 0BSD.
    license=$(node -e 'console.log(require(process.argv[1]).license || "see LICENSE")' \
      "$work/x/$name/package/package.json")
    case $name in
      htmx.org) dir=htmx ;;
      htmx-ext-ws) dir=htmx-ext-ws ;;
      @xterm/xterm) dir=xterm ;;
      @xterm/addon-fit) dir=xterm-addon-fit ;;
      @novnc/novnc) dir=novnc ;;
      uplot) dir=uplot ;;
    esac
    echo "| \`$name\` | $version | \`$integrity\` | \`$dir/\` | $license |"
  done < "$work/packed.tsv"
} > "$new/VERSIONS.md"

rm -rf "$dest"
mkdir -p "$(dirname "$dest")"
cp -a "$new" "$dest"
cut -f1,2 "$work/packed.tsv" | sed 's/\t/ /' | sed "s|^|vendored |"
