#!/usr/bin/env bash
# Prepares what `bun build.ts --arch arm64` needs on an amd64 host, without
# running any arm64 code:
#   .cache/sysroot-arm64/   Debian's arm64 busybox-static, kmod and its
#                           libraries, libc6 (the Bun runtime's loader and
#                           libraries) and the arm64 kernel with its modules,
#                           unpacked with dpkg-deb -x (nothing is installed)
#   .cache/bun-linux-aarch64/bun   the Bun runtime for linux-arm64 from npm,
#                           at the version and integrity package-lock.json pins
# Called by scripts/deps.sh; idempotent, and quiet when everything is there.
set -euo pipefail
cd "$(dirname "$0")/.."

SYSROOT=.cache/sysroot-arm64
DEBS=.cache/debs-arm64
RUNTIME=.cache/bun-linux-aarch64
SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo

# Debian's package names; the kernel is the versioned package the
# linux-image-arm64 meta-package points at (found below).
PACKAGES=(
  busybox-static         # shim, emergency shell, the stage-2 test init
  kmod libkmod2          # modprobe in the initrd
  liblzma5 libzstd1 libssl3 zlib1g   # kmod's libraries (compressed modules, signatures)
  libc6                  # ld-linux-aarch64.so.1 and libc for kmod and the Bun runtime
  # Only the arm64 QEMU scenarios' stage-2 test init (qemu-tests/harness/images.ts):
  dmsetup libdevmapper1.02.1 libselinux1 libpcre2-8-0 libudev1
)

# The sysroot stands in for the packages an arm64 host would have installed;
# only an amd64 host builds arm64 from one.
host_arch=$(dpkg --print-architecture)
if [ "$host_arch" != amd64 ]; then
  echo "arm64-sysroot: the build host is $host_arch, not amd64: no arm64 sysroot is prepared (build.ts --arch arm64 needs one only on amd64)" >&2
  exit 1
fi

# --- the Debian sysroot --------------------------------------------------
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
  echo "arm64-sysroot: dpkg --add-architecture arm64"
  $SUDO dpkg --add-architecture arm64
fi
# apt-cache knows arm64 packages only after an update with the architecture added.
if ! apt-cache show busybox-static:arm64 >/dev/null 2>&1; then
  echo "arm64-sysroot: apt-get update (arm64 package lists)"
  $SUDO apt-get update -qq
fi
kernel_pkg=$(apt-cache depends linux-image-arm64:arm64 | awk '/Depends: linux-image-[0-9]/ { sub(/:arm64$/, "", $2); print $2; exit }')
[ -n "$kernel_pkg" ] || { echo "arm64-sysroot: cannot tell which kernel package linux-image-arm64:arm64 depends on" >&2; exit 1; }

# One apt-cache call for all candidates (one per package took seconds on every run).
names=("${PACKAGES[@]}" "$kernel_pkg")
# apt-cache prints nothing for a name it does not know, so the versions are
# keyed by the name in each block's header ("busybox-static:arm64:"), not
# matched by position.
declare -A candidate=()
while read -r name v; do candidate[$name]=$v; done < <(apt-cache policy "${names[@]/%/:arm64}" | awk '/^[^ ]/ { name = $1; sub(/:arm64:$/, "", name) } /Candidate:/ { print name, $2 }')
want=()
for n in "${names[@]}"; do
  v=${candidate[$n]:-}
  [ -n "$v" ] && [ "$v" != "(none)" ] || { echo "arm64-sysroot: no candidate version of $n:arm64 in the apt lists (is this Debian 12? try apt-get update)" >&2; exit 1; }
  want+=("$n:arm64=$v")
done
stamp="$SYSROOT/.packages"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "${want[*]}" ]; then
  echo "arm64-sysroot: unpacking ${want[*]} into $SYSROOT"
  rm -rf "$DEBS" "$SYSROOT.tmp"
  mkdir -p "$DEBS" "$SYSROOT.tmp"
  # apt-get download writes to the cwd; it checks each .deb against the
  # signed package lists.
  # (Sandbox::User=root: the _apt user cannot write into this tree.)
  # Stale package lists name versions the mirror no longer has: one update, then one retry.
  if ! (cd "$DEBS" && apt-get download -qq -o APT::Sandbox::User=root "${want[@]}"); then
    if [ -n "${ARM64_SYSROOT_RETRIED:-}" ]; then
      echo "arm64-sysroot: apt-get download of ${want[*]} failed again after apt-get update" >&2
      exit 1
    fi
    echo "arm64-sysroot: download failed; apt-get update and one retry" >&2
    $SUDO apt-get update -qq
    ARM64_SYSROOT_RETRIED=1 exec bash "$0"
  fi
  for deb in "$DEBS"/*.deb; do
    /usr/bin/dpkg-deb -x "$deb" "$SYSROOT.tmp"
  done
  # Debian 12 is not merged-/usr inside its packages: make /lib and /bin
  # resolve like on an installed system (usrmerge), so the ELF resolver's
  # search dirs and the loader path /lib/ld-linux-aarch64.so.1 both exist.
  for d in bin sbin lib; do
    if [ -d "$SYSROOT.tmp/usr/$d" ] && [ -d "$SYSROOT.tmp/$d" ] && [ ! -L "$SYSROOT.tmp/$d" ]; then
      cp -a "$SYSROOT.tmp/$d/." "$SYSROOT.tmp/usr/$d/"
      rm -rf "${SYSROOT:?}.tmp/$d"
    fi
    [ -e "$SYSROOT.tmp/$d" ] || ln -s "usr/$d" "$SYSROOT.tmp/$d"
  done
  # depmod's indexes: the package ships only the module files (its postinst
  # runs depmod); the build-host depmod writes them, arch-independent.
  kver=$(ls "$SYSROOT.tmp/usr/lib/modules")
  /sbin/depmod -b "$SYSROOT.tmp" "$kver"
  printf '%s' "${want[*]}" >"$SYSROOT.tmp/.packages"
  rm -rf "$SYSROOT" "$DEBS"
  mv "$SYSROOT.tmp" "$SYSROOT"
fi

# --- the Bun runtime for linux-arm64 ---------------------------------------
# The same version as the bun devDependency, checked against the sha512 that
# package-lock.json records for @oven/bun-linux-aarch64 (bun's optional
# dependency for arm64 hosts, which npm ci skips on amd64).
entry='require("./package-lock.json").packages["node_modules/@oven/bun-linux-aarch64"]'
version=$(node -p "($entry || {}).version || ''")
integrity=$(node -p "($entry || {}).integrity || ''")
bun_version=$(node -p 'require("./package-lock.json").packages["node_modules/bun"].version')
if [ -z "$version" ] || [ -z "$integrity" ] || [ "$version" != "$bun_version" ]; then
  echo "arm64-sysroot: package-lock.json must pin node_modules/@oven/bun-linux-aarch64 with a version (found '$version', bun is $bun_version) and an integrity (found '${integrity:0:20}')" >&2
  exit 1
fi
if [ ! -x "$RUNTIME/bun" ] || [ "$(cat "$RUNTIME/.integrity" 2>/dev/null)" != "$integrity" ]; then
  echo "arm64-sysroot: @oven/bun-linux-aarch64@$version from npm"
  rm -rf "$RUNTIME" "$RUNTIME.tmp"
  mkdir -p "$RUNTIME.tmp"
  tgz=$(cd "$RUNTIME.tmp" && npm pack --silent "@oven/bun-linux-aarch64@$version")
  got="sha512-$(openssl dgst -sha512 -binary "$RUNTIME.tmp/$tgz" | base64 -w0)"
  if [ "$got" != "$integrity" ]; then
    echo "arm64-sysroot: $tgz has $got, package-lock.json pins $integrity: refusing it" >&2
    exit 1
  fi
  tar -xzf "$RUNTIME.tmp/$tgz" -C "$RUNTIME.tmp" package/bin/bun
  mv "$RUNTIME.tmp/package/bin/bun" "$RUNTIME.tmp/bun"
  chmod 755 "$RUNTIME.tmp/bun"
  printf '%s' "$integrity" >"$RUNTIME.tmp/.integrity"
  rm -rf "$RUNTIME.tmp/package" "$RUNTIME.tmp/$tgz"
  mv "$RUNTIME.tmp" "$RUNTIME"
fi
