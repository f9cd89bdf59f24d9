#!/usr/bin/env bash
# Builds the Debian package build/pkg/cachewarp_<version>-<rev>_<arch>.deb with dpkg-deb.
#
# The binaries are built in their own tree (build/deb) with Debian's hardening flags
# (dpkg-buildflags, hardening=+all), installed with `make install PREFIX=/usr` into a staging
# root, stripped; the man pages and the changelog are compressed, the Depends line comes
# from dpkg-shlibdeps (the runtime libraries by Debian package name), and the control files
# from pkg/debian/. Prints the path of the .deb on stdout. Needs dpkg-dev (PKG_DEPS=1
# scripts/deps.sh). Env: DEB_REVISION (1), MAINTAINER, BUILD (build/deb), OUT (build/pkg).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

build=${BUILD:-build/deb}
out=${OUT:-build/pkg}
revision=${DEB_REVISION:-1}
maintainer=${MAINTAINER:-CacheWarp maintainers <cachewarp@example.org>}
arch=$(dpkg --print-architecture)

# Reproducible: timestamps come from the last commit.
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}
export DEB_BUILD_MAINT_OPTIONS=hardening=+all
cflags="$(dpkg-buildflags --get CFLAGS) $(dpkg-buildflags --get CPPFLAGS)"
ldflags="$(dpkg-buildflags --get LDFLAGS)"

echo "deb: building into $build with dpkg-buildflags" >&2
CFLAGS=$cflags LDFLAGS=$ldflags nice -n 10 make --no-print-directory -j2 BUILD="$build" SAN= \
    "$build/bin/cachewarpd" "$build/bin/cwctl" >&2

upstream=$("$build/bin/cachewarpd" --version | awk '{print $2}')
[ -n "$upstream" ] || { echo "deb: cannot read the version from cachewarpd --version" >&2; exit 1; }
version="$upstream-$revision"

stage="$build/stage"
root="$stage/root"
rm -rf "$stage"
mkdir -p "$root/DEBIAN" "$out"
make --no-print-directory -s install BUILD="$build" SAN= PREFIX=/usr DESTDIR="$repo/$root" >&2

# No unstripped binaries in the package (lintian); the debug info stays in $build.
for f in "$root/usr/sbin/cachewarpd" "$root/usr/bin/cwctl"; do
    [ -e "$f" ] || continue
    strip --strip-unneeded --remove-section=.comment --remove-section=.note "$f"
done

doc="$root/usr/share/doc/cachewarp"
mkdir -p "$doc"
install -m 0644 pkg/debian/copyright "$doc/copyright"
sed -e "s|@VERSION@|$version|" -e "s|@MAINTAINER@|$maintainer|" \
    -e "s|@DATE@|$(date -R -u -d "@$SOURCE_DATE_EPOCH")|" pkg/debian/changelog |
    gzip -9n >"$doc/changelog.Debian.gz"
install -m 0644 README.md "$doc/README.md"
install -m 0644 docs/METRICS.md "$doc/METRICS.md"
gzip -9n "$root"/usr/share/man/man*/*.[0-9]
chmod 0644 "$doc"/*

# Depends: the libraries the binaries link, by Debian package name and minimum version.
mkdir -p "$stage/debian"
printf 'Source: cachewarp\n\nPackage: cachewarp\nArchitecture: any\n' >"$stage/debian/control"
bins=()
for f in "$root/usr/sbin/cachewarpd" "$root/usr/bin/cwctl"; do [ -e "$f" ] && bins+=("$repo/$f"); done
shlibs=$(cd "$stage" && dpkg-shlibdeps -O "${bins[@]}" 2>/dev/null | sed -n 's/^shlibs:Depends=//p')
[ -n "$shlibs" ] || { echo "deb: dpkg-shlibdeps found no dependencies" >&2; exit 1; }
# adduser: the postinst's fallback when systemd-sysusers is absent.
depends="$shlibs, adduser"

size=$(du -k -s --apparent-size --exclude=DEBIAN "$root" | cut -f1)
sed -e "s|@VERSION@|$version|" -e "s|@ARCH@|$arch|" -e "s|@MAINTAINER@|$maintainer|" \
    -e "s|@SIZE@|$size|" -e "s|@DEPENDS@|$depends|" pkg/debian/control.in >"$root/DEBIAN/control"
install -m 0644 pkg/debian/conffiles "$root/DEBIAN/conffiles"
for s in postinst prerm postrm; do install -m 0755 "pkg/debian/$s" "$root/DEBIAN/$s"; done
(cd "$root" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z |
    xargs -0 md5sum) >"$root/DEBIAN/md5sums"
chmod 0644 "$root/DEBIAN/md5sums"

# Every file root:root, directories 0755, timestamps clamped for a reproducible archive.
find "$root" -type d -exec chmod 0755 {} +
find "$root" -newermt "@$SOURCE_DATE_EPOCH" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
deb="$out/cachewarp_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >&2
echo "$deb"
