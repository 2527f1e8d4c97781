#!/usr/bin/env bash
# Builds the Debian package of the module from a copy of this tree:
#   sudo bash build/package.sh [--no-lintian] [OUT_DIR]
# Copies the tree (the files git tracks or would track, without build
# products) to a temporary directory, puts build/debian there as debian/,
# runs "dpkg-buildpackage -us -uc -b" there and copies the .deb files
# (libapache2-mod-openai-proxy_VERSION_ARCH.deb and its -dbgsym package) and
# the build log to OUT_DIR (default build/out). Fails when debian/changelog
# does not have the module's version (OAIP_VERSION in
# mod_openai_proxy/core/version.h), when the build prints a warning, and when
# lintian reports an error. Needs root only to install what is missing
# (build/deps.sh package).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
package=libapache2-mod-openai-proxy

run_lintian=1
out=
while (($#)); do
    case $1 in
        --no-lintian) run_lintian=0 ;;
        -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
        -*) echo "package.sh: unknown option $1" >&2; exit 2 ;;
        *) out=$1 ;;
    esac
    shift
done
out=${out:-$repo/build/out}

bash build/deps.sh package

# The package's version is the module's.
module_version=$(sed -n 's/^#define OAIP_VERSION "\(.*\)"$/\1/p' mod_openai_proxy/core/version.h)
deb_version=$(dpkg-parsechangelog -l build/debian/changelog -S Version)
upstream_version=${deb_version#*:}      # no epoch
upstream_version=${upstream_version%-*} # no Debian revision
if [[ -z $module_version || $upstream_version != "$module_version" ]]; then
    echo "package.sh: mod_openai_proxy/core/version.h has OAIP_VERSION \"$module_version\"," \
         "build/debian/changelog has $deb_version: add a changelog entry for $module_version" >&2
    exit 1
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/oaip-package.XXXXXX")
trap 'rm -rf "$work"' EXIT
src=$work/$package-$upstream_version
mkdir "$src"

echo "== copying the tree to $src"
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    # tracked files (as they are in the work tree) and new ones not ignored
    git ls-files -z --cached --others --exclude-standard |
        while IFS= read -r -d '' f; do
            [[ -e $f || -L $f ]] && printf '%s\0' "$f"
        done |
        tar -c --null -T - -f - | tar -x -C "$src" -f -
else
    tar -c --exclude=./.git --exclude=./build/out --exclude=./build/run \
        --exclude='node_modules' -f - . | tar -x -C "$src" -f -
fi
rm -rf "$src/debian"
cp -a build/debian "$src/debian"

echo "== dpkg-buildpackage -us -uc -b"
log=$work/build.log
if ! (cd "$src" && dpkg-buildpackage -us -uc -b) >"$log" 2>&1; then
    tail -n 60 "$log" >&2
    echo "package.sh: dpkg-buildpackage failed (the whole log: above, last 60 lines)" >&2
    exit 1
fi
# "file.c:1:2: warning: ...", "dpkg-shlibdeps: warning: ...", "libtool: warning: ..."
if grep -inE '(^|[[:space:]:])warning:' "$log" >&2; then
    echo "package.sh: the package build printed warnings (above)" >&2
    exit 1
fi

arch=$(dpkg-architecture -qDEB_HOST_ARCH)
changes=$work/${package}_${deb_version#*:}_$arch.changes
debs=("$work"/*.deb)
[[ -e ${debs[0]} ]] || { echo "package.sh: no .deb built" >&2; exit 1; }

if ((run_lintian)); then
    echo "== lintian $(basename "$changes")"
    rc=0
    # --allow-root: lintian unpacks what this script has just built
    allow_root=(); [[ $(id -u) == 0 ]] && allow_root=(--allow-root)
    lintian "${allow_root[@]}" --display-info "$changes" >"$work/lintian.txt" 2>&1 || rc=$?
    if [[ -s $work/lintian.txt ]]; then cat "$work/lintian.txt"; else echo "(no tags)"; fi
    if ((rc != 0)); then
        echo "package.sh: lintian failed (exit $rc)" >&2
        exit 1
    fi
fi

mkdir -p "$out"
rm -f "$out/${package}"_*.deb "$out/${package}"-dbgsym_*.deb
cp "${debs[@]}" "$out/"
cp "$log" "$out/${package}_${deb_version#*:}_$arch.build.log"
echo "== built"
for d in "${debs[@]}"; do
    echo "$out/$(basename "$d")"
done
