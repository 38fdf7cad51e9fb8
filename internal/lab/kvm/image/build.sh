#!/usr/bin/env bash
# Builds the KVM lab's machine image. Run by pingpath (package kvm) with the
# files of this directory beside it; it is not meant to be run by hand, but
# it can be:
#
#   OUT=/tmp/img SUITE=bookworm MIRROR=http://deb.debian.org/debian \
#   KROOT=.cache/kernels/6.12/root KVER=6.12.95+deb12-cloud-amd64 \
#   PACKAGES="$(grep -v '^#' packages)" DEB_CACHE=/var/cache/pingpath-debs \
#   bash build.sh
#
# HEADERS, when set, is a root tree of the kernel's headers
# (scripts/kernels.sh --headers) copied into the image, for BCC.
#
# Output in $OUT:
#   disk.img   ext4 file system (made with mke2fs -d, never mounted): the
#              Debian root of hosts and VMs, with the kernel's modules and
#              the pingpath init scripts. Booted read-only under a tmpfs
#              overlay, so one file serves every node of every lab.
#   vmlinuz    the kernel (also in the image as /boot/vmlinuz, for the VMs)
#   initrd     a small busybox initramfs that loads virtio_blk and overlay,
#              mounts disk.img and switches to /sbin/pingpath-init (also in
#              the image as /boot/initrd)
#   packages.txt  the installed packages and versions
set -euo pipefail

: "${OUT:?}" "${SUITE:?}" "${MIRROR:?}" "${KROOT:?}" "${KVER:?}" "${PACKAGES:?}"
here=$(cd "$(dirname "$0")" && pwd)
log() { echo "kvm image: $*" >&2; }

work=$(mktemp -d "$OUT/.work.XXXXXX")
root=$work/root
cleanup() {
  # debootstrap mounts /proc and /sys inside the target; never leave them.
  for m in proc sys dev/pts dev; do
    mountpoint -q "$root/$m" 2>/dev/null && umount -l "$root/$m" || true
  done
  rm -rf "$work"
}
trap cleanup EXIT

include=$(echo $PACKAGES | tr ' ' ',')
cache_opt=()
if [[ -n ${DEB_CACHE:-} ]]; then
  mkdir -p "$DEB_CACHE"
  cache_opt=(--cache-dir="$DEB_CACHE")
fi
log "debootstrap $SUITE ($include)"
debootstrap --variant=minbase "${cache_opt[@]}" --include="$include" "$SUITE" "$root" "$MIRROR" \
  >"$work/debootstrap.log" 2>&1 || { tail -30 "$work/debootstrap.log" >&2; exit 1; }
for m in proc sys; do mountpoint -q "$root/$m" && umount -l "$root/$m" || true; done

chroot "$root" dpkg-query -W -f='${Package} ${Version}\n' >"$OUT/packages.txt"

if [[ -n ${HEADERS:-} ]]; then
  log "kernel headers ($HEADERS)"
  # The root is usr-merged (lib -> usr/lib): keep its directory links.
  tar -C "$HEADERS" -cf - . | tar -C "$root" -xf - --keep-directory-symlink
  [[ -L $root/lib/modules/$KVER/build ]] || { log "no lib/modules/$KVER/build in $HEADERS"; exit 1; }
  echo "linux-headers-$KVER (unpacked, not installed)" >>"$OUT/packages.txt"
fi

log "trimming"
rm -rf "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* \
  "$root"/usr/share/locale/* "$root"/var/cache/apt/* "$root"/var/lib/apt/lists/* \
  "$root"/var/log/* "$root"/etc/ssh/ssh_host_*
# Every node gets its host key from the lab at boot; none is baked in.

log "kernel $KVER"
mkdir -p "$root/lib/modules" "$root/boot"
cp -a "$KROOT/lib/modules/$KVER" "$root/lib/modules/"
cp "$KROOT/boot/vmlinuz-$KVER" "$root/boot/vmlinuz"
cp "$KROOT/boot/vmlinuz-$KVER" "$OUT/vmlinuz"
# The uncompressed kernel, booted through its PVH entry (QEMU -kernel with
# an ELF): the machines skip decompressing a compressed kernel, which
# under emulation (nested: twice over) takes many seconds.
extract_vmlinux() {
  local magic tool off
  for pair in $'\x28\xb5\x2f\xfd':unzstd $'\x02\x21\x4c\x18':'lz4 -dc' $'\xfd7zXZ\x00':unxz $'\x1f\x8b\x08':'gzip -dc'; do
    magic=${pair%%:*} tool=${pair#*:}
    command -v "${tool%% *}" >/dev/null || continue
    for off in $(LC_ALL=C grep -abo "$magic" "$1" | cut -d: -f1 | head -5); do
      tail -c +$((off + 1)) "$1" | $tool >"$2" 2>/dev/null
      if [[ $(head -c 4 "$2") == $'\x7fELF' ]]; then return 0; fi
    done
  done
  rm -f "$2"
  return 1
}
if extract_vmlinux "$KROOT/boot/vmlinuz-$KVER" "$OUT/vmlinux"; then
  cp "$OUT/vmlinux" "$root/boot/vmlinux"
else
  log "no decompressor for $KVER's vmlinuz: machines boot the compressed kernel"
fi
# kmod's modprobe wants the binary indexes depmod writes.
chroot "$root" depmod "$KVER"

log "pingpath init"
install -m 0755 "$here/pingpath-init" "$root/sbin/pingpath-init"
install -d -m 0755 "$root/etc/pingpath/datapath"
for f in "$here"/datapath-*; do
  install -m 0755 "$f" "$root/etc/pingpath/datapath/${f##*/datapath-}"
done
install -m 0644 "$here/sshd_config" "$root/etc/ssh/sshd_config.d/pingpath.conf"
# Root logs in by key only; '*' is "no password" without being "locked",
# which sshd (without PAM) would refuse even for keys.
sed -i 's/^root:[^:]*:/root:*:/' "$root/etc/shadow"
echo "pingpath" >"$root/etc/hostname"
: >"$root/etc/fstab"

log "initramfs"
ird=$work/initramfs
mkdir -p "$ird"/{bin,dev,proc,sys,lower,upper,newroot,lib/modules}
cp "$root/bin/busybox" "$ird/bin/busybox"
# What mounting the image needs (virtio_pci is a module before 6.12), and
# virtio_rng: without a hardware RNG an emulated machine's crng takes a
# minute to initialise, and sshd waits for it. modprobe lists each
# module's dependencies first; the init loads them in this order.
: >"$ird/lib/modules/order"
for m in virtio_pci virtio_blk overlay virtio_rng; do
  chroot "$root" modprobe -S "$KVER" --show-depends "$m" | while read -r kind path _; do
    [[ $kind == insmod ]] || continue
    name=${path##*/}
    grep -qx "$name" "$ird/lib/modules/order" && continue
    cp "$root$path" "$ird/lib/modules/$name"
    echo "$name" >>"$ird/lib/modules/order"
  done
done
install -m 0755 "$here/initramfs-init" "$ird/init"
(cd "$ird" && find . | sort | "$root/bin/busybox" cpio -o -H newc 2>/dev/null | gzip -1) >"$OUT/initrd"
cp "$OUT/initrd" "$root/boot/initrd"

log "ext4 image"
# Size: the tree plus a fifth, at least 64 MiB of slack for inode tables.
kb=$(du -sk "$root" | cut -f1)
size=$(((kb + kb / 5 + 65536) / 1024))M
mke2fs -q -t ext4 -O ^has_journal -m 0 -L pingpath -E root_owner=0:0 -d "$root" "$OUT/disk.img" "$size"
log "done: $(du -h --apparent-size "$OUT/disk.img" | cut -f1) image"
