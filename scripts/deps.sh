#!/usr/bin/env bash
# Installs what building and testing bunboot needs on a fresh Debian machine:
# Debian packages (kernel, QEMU, the tools the initrd ships and the tests use)
# and the pinned npm packages (Bun among them). Idempotent and quiet when
# everything is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  qemu-system-x86        # boots the scenarios (TCG)
  qemu-system-arm        # qemu-system-aarch64: the arm64 scenarios (TCG)
  qemu-user              # qemu-aarch64 lists the arm64 busybox's applets at build time
  qemu-utils             # qemu-img: the SD-card scenario's power-of-two qcow2 overlay
  linux-image-amd64      # the real Debian kernel and its modules
  busybox-static         # shim, emergency shell, stage-2 test init
  kmod                   # modprobe in the initrd, depmod at build time
  cryptsetup-bin         # veritysetup: test image formatting, the benchmark's reference initrd
  dmsetup                # stage-2 test initrd's dm status check, the benchmark's reference initrd
  squashfs-tools         # mksquashfs for test images
  fdisk gdisk            # sfdisk/sgdisk for GPT test disks
  e2fsprogs dosfstools btrfs-progs xfsprogs erofs-utils genisoimage  # filesystems for probe tests and plain /usr
  zstd xz-utils gzip cpio   # initrd compression; cpio cross-checks in unit tests
  mtools                 # mcopy fills the vfat ESP of the kexec scenarios without a loop mount
  openssh-server openssl    # SFTP and HTTPS servers for the remote /usr tests
  curl                      # the reference side of bench/fetch.ts
  nbd-server                # the NBD server of the verity.usr=nbd:// scenarios
  man-db groff-base         # man -l renders the generated man pages in a unit test
  nfs-ganesha nfs-ganesha-vfs  # a userspace NFSv4 server for the verity.usr=nfs:// and NFS /usr scenarios
  linux-libc-dev gcc binutils  # unit tests compare errno, dm ioctl layouts and ELF parsing against headers, cc and readelf
  linux-source make bc flex bison libelf-dev  # the kexec scenario builds a small kernel with bunboot embedded (CONFIG_INITRAMFS_SOURCE)
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "deps: installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  # INITRD=No: Debian's kernel hook would otherwise spend a minute building
  # an initramfs-tools image we never use.
  # No package may start its service (nbd-server, rpcbind for nfs-ganesha):
  # the tests start their own servers on 127.0.0.1. policy-rc.d exit 101
  # tells invoke-rc.d so, for this install only, unless one is in place.
  policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    policy=/usr/sbin/policy-rc.d
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
    $SUDO chmod 755 "$policy"
  fi
  rc=0
  $SUDO env DEBIAN_FRONTEND=noninteractive INITRD=No apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || rc=$?
  [ -z "$policy" ] || $SUDO rm -f "$policy"
  [ "$rc" = 0 ] || exit "$rc"
fi

# A node_modules that is a symlink is shared with another checkout: npm ci
# would empty the directory it points to (every checkout using it loses its
# packages while it runs) and replace the link. A fresh checkout's
# package-lock.json is always newer than the shared install, so for a link
# only a missing or broken Bun counts, and then the owner must reinstall.
if [ -L node_modules ]; then
  node_modules/.bin/bun --version >/dev/null 2>&1 || { echo "deps: node_modules is a symlink to $(readlink node_modules) without a working Bun: run npm ci there" >&2; exit 1; }
elif [ ! -x node_modules/.bin/bun ] || [ package-lock.json -nt node_modules/.package-lock.json ] || ! node_modules/.bin/bun --version >/dev/null 2>&1; then
  echo "deps: npm ci"
  # .npmrc sets ignore-scripts: ssh2's optional native addons must not be
  # built (Bun cannot load them). Bun's own postinstall, which puts the
  # pinned binary in place, is the one script we do want.
  npm ci --no-audit --no-fund --loglevel=error
  (cd node_modules/bun && node install.js)
  node_modules/.bin/bun --version >/dev/null
fi

# The arm64 cross build's inputs: Debian's arm64 packages unpacked into
# .cache/sysroot-arm64 and the pinned Bun runtime for linux-arm64.
bash scripts/arm64-sysroot.sh
