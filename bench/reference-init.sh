#!/bin/busybox sh
# The benchmark's reference first stage: a busybox shell init that follows the
# boot contract the way Flatcar's minimal-init does (mdev, modalias coldplug
# through kmod, veritysetup, loop, overlay, switch_root), so bench/run.ts can
# compare bunboot against what it replaces. Built into an initrd by
# `bun build.ts --reference-init bench/reference-init.sh`: same busybox, kmod,
# veritysetup and modules as ours, only the init differs.
#
# It is a yardstick, not a product: it handles the verity and plain-device
# boots the benchmark uses and stops with a message on anything else. Each
# step logs "refinit[<step>]: step <name>: done in N ms" to /dev/kmsg, the
# same form as bunboot's lines, so the same parser and timeline read both.
export PATH=/sbin:/bin
BB=/bin/busybox

# /proc/uptime in ms (10 ms resolution): the step durations in the log.
now_ms() {
  read -r up _ </proc/uptime
  s=${up%.*}
  c=${up#*.}
  # "05" would be octal in some shells; strip one leading zero.
  c=${c#0}
  echo $((s * 1000 + c * 10))
}

log() {
  echo "<6>refinit[$STEP]: $*" >/dev/kmsg 2>/dev/null || echo "refinit[$STEP]: $*" >/dev/console
}

STEP=init
T0=0
begin() {
  STEP=$1
  T0=$(now_ms)
}
done_step() {
  log "step $STEP: done in $(($(now_ms) - T0)) ms"
}

fail() {
  echo "refinit: FAILED in step $STEP: $*" >/dev/console
  log "FAILED: $*"
  # The benchmark treats a failed boot as a failure; no shell, no retry.
  $BB poweroff -f
  sleep 60
}

# --- early mounts (contract step 1) ---
STEP=early-mounts
T0=0
$BB mount -t proc -o nosuid,nodev,noexec proc /proc
begin early-mounts
$BB mount -t sysfs -o nosuid,nodev,noexec sysfs /sys
$BB mount -t devtmpfs -o nosuid,mode=0755 devtmpfs /dev
$BB mkdir -p /dev/pts
$BB mount -t devpts -o gid=5,mode=620,ptmxmode=000 devpts /dev/pts
$BB mount -t tmpfs -o nosuid,nodev,mode=0755 tmpfs /run
# Lift kmsg's rate limit so every step line reaches the log (as bunboot does).
echo on >/proc/sys/kernel/printk_devkmsg 2>/dev/null
done_step
log "reference init starting (PID $$)"

# --- command line ---
begin cmdline
USR="" USRHASH="" MOUNTUSR="" USRFSTYPE=auto USRFLAGS=ro INIT=/init
# shellcheck disable=SC2013
for w in $(cat /proc/cmdline); do
  case "$w" in
    verity.usr=*) USR=${w#verity.usr=} ;;
    verity.usrhash=*) USRHASH=${w#verity.usrhash=} ;;
    mount.usr=* | usr=*) MOUNTUSR=${w#*=} ;;
    mount.usrfstype=* | usrfstype=*) USRFSTYPE=${w#*=} ;;
    mount.usrflags=* | usrflags=*) USRFLAGS=${w#*=} ;;
    init=*) INIT=${w#init=} ;;
  esac
done
done_step

# --- device manager (contract step 2): mdev daemon loading a module for
# every uevent with a MODALIAS, plus a coldplug of every modalias in /sys,
# both through kmod's modprobe -b.
begin device-manager
$BB mkdir -p /etc
echo '$MODALIAS=.* 0:0 0660 @/sbin/modprobe -b -q "$MODALIAS"' >/etc/mdev.conf
$BB mdev -d
$BB mdev -s
# /sys/devices, not /sys/bus: find does not follow the bus's device links.
$BB find /sys/devices -name modalias -exec $BB cat {} + 2>/dev/null | $BB sort -u | $BB xargs -r /sbin/modprobe -b -q -a
/sbin/modprobe -b -a sd_mod loop dm_mod dm_verity squashfs overlay
done_step

# --- wait for the /usr device (contract step 3): PARTUUID/PARTLABEL from the
# partitions' uevent files, UUID/LABEL through findfs, /dev paths as they are.
lower() { echo "$1" | $BB tr 'A-F' 'a-f'; }
# PARTUUID of a partition from its disk's GPT, for kernels whose uevent lacks
# it (Flatcar patches its kernel; Debian's 6.1 does not have the patch, and
# bunboot reads the GPT then too). Entry array LBA from the header, 128-byte
# entries, the GUID's first three fields little-endian.
gpt_partuuid() {
  sys=$($BB readlink -f "/sys/class/block/$1") || return 1
  disk=${sys%/*}
  disk=${disk##*/}
  n=$($BB cat "/sys/class/block/$1/partition") || return 1
  bs=$($BB cat "/sys/block/$disk/queue/logical_block_size")
  lba=$($BB hexdump -s $((bs + 72)) -n 4 -e '1/4 "%u"' "/dev/$disk") || return 1
  h=$($BB hexdump -s $((lba * bs + (n - 1) * 128 + 16)) -n 16 -e '16/1 "%02x"' "/dev/$disk") || return 1
  echo "${h:6:2}${h:4:2}${h:2:2}${h:0:2}-${h:10:2}${h:8:2}-${h:14:2}${h:12:2}-${h:16:4}-${h:20:12}"
}
find_dev() {
  case "$1" in
    PARTUUID=* | PARTLABEL=*)
      key=${1%%=*}
      [ "$key" = PARTLABEL ] && key=PARTNAME
      want=$(lower "${1#*=}")
      for u in /sys/class/block/*/uevent; do
        d=${u%/uevent}
        v=$($BB sed -n "s/^$key=//p" "$u")
        if [ -z "$v" ] && [ "$key" = PARTUUID ] && [ -f "$d/partition" ]; then
          v=$(gpt_partuuid "${d##*/}")
        fi
        [ -n "$v" ] && [ "$(lower "$v")" = "$want" ] || continue
        echo "/dev/${d##*/}"
        return 0
      done
      return 1
      ;;
    UUID=* | LABEL=*) $BB findfs "$1" 2>/dev/null ;;
    /dev/*) [ -b "$1" ] && echo "$1" ;;
    *) return 1 ;;
  esac
}
begin wait-usr
SPEC=${USR:-$MOUNTUSR}
[ -n "$SPEC" ] || fail "no verity.usr= or mount.usr= on the command line"
DEV=""
i=0
while ! DEV=$(find_dev "$SPEC"); do
  i=$((i + 1))
  [ $i -gt 6000 ] && fail "timed out waiting for $SPEC"
  $BB usleep 50000
done
log "$SPEC is $DEV"
done_step

# --- verity (contract step 4) ---
if [ -n "$USR" ]; then
  begin verity
  [ -n "$USRHASH" ] || fail "verity.usr= without verity.usrhash="
  /sbin/veritysetup open "$DEV" usr "$DEV" "$USRHASH" --hash-offset=1065345024 --panic-on-corruption || fail "veritysetup open failed"
  case "$(/sbin/dmsetup status usr)" in
    *" verity V"*) ;;
    *) fail "dm-verity status is not V" ;;
  esac
  DEV=/dev/mapper/usr
  done_step
fi

# --- /usr (contract step 5) ---
begin mount-usr
$BB mkdir -p /sysusr/usr
OPTS=$USRFLAGS
case "$USRFSTYPE" in btrfs | auto) OPTS="$OPTS,rescue=nologreplay" ;; esac
if [ "$USRFSTYPE" = auto ]; then
  # busybox tries every type in /proc/filesystems; without the btrfs-only
  # option first, as Flatcar's script falls back.
  $BB mount -o "$USRFLAGS" "$DEV" /sysusr/usr || fail "mounting $DEV on /sysusr/usr"
else
  $BB mount -t "$USRFSTYPE" -o "$OPTS" "$DEV" /sysusr/usr || fail "mounting $DEV on /sysusr/usr"
fi
done_step

# --- full initrd (contract step 6) ---
begin full-initrd
IMG=/sysusr/usr/lib/flatcar/bootengine.img
[ -f "$IMG" ] || fail "$IMG is missing"
# busybox losetup has no --show: ask for the free device, then attach it.
LOOP=$($BB losetup -f) || fail "no free loop device"
$BB losetup -r "$LOOP" "$IMG" || fail "losetup $LOOP $IMG"
$BB mkdir -p /underlay /work /realinit
$BB mount -t squashfs -o ro "$LOOP" /underlay || fail "mounting $IMG"
$BB mount -t tmpfs -o nosuid,nodev,mode=0755 tmpfs /work
$BB mkdir -p /work/upper /work/work
$BB mount -t overlay -o lowerdir=/underlay,upperdir=/work/upper,workdir=/work/work overlay /realinit || fail "overlay"
$BB mkdir -p /realinit/sysusr/usr
$BB mount --move /sysusr/usr /realinit/sysusr/usr || fail "moving /usr"
done_step

# --- switch root (contract step 8) ---
begin switch-root
$BB killall mdev 2>/dev/null
$BB mkdir -p /realinit/run
$BB mount --move /run /realinit/run
$BB umount /dev/pts 2>/dev/null
$BB umount /sys 2>/dev/null
$BB umount -l /dev 2>/dev/null
log "peak RSS $($BB sed -n 's/^VmHWM:[[:space:]]*//p' /proc/$$/status) (VmHWM of PID 1)"
log "switching root to /realinit, exec $INIT"
$BB umount -l /proc 2>/dev/null
exec $BB switch_root /realinit "$INIT"
