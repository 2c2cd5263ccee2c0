#!/usr/bin/env bash
# Builds the kernel and initramfs that tests/cli/qemu.rs network-boots under QEMU:
#
#   mkinitramfs.sh OUTDIR      ->  OUTDIR/vmlinuz  OUTDIR/initrd.img
#
# The kernel is Debian's current amd64 kernel, taken out of its package without installing it, so
# the host's /boot and module tree are never touched. The initramfs holds busybox-static, the
# kernel's e1000 driver (QEMU's default NIC) and what a virtio-scsi disk needs (modules in
# Debian's kernel, loaded in the order of $MODULES), the real Ignition runner with the
# libraries it links, the C libraries a kindling binary links (for a unit the harness runs),
# and tests/e2e/initramfs-init.sh as /init. The recipe and
# its timings are in ../shared/docs/real-clients.md, section B.3.
#
# OUTDIR is also the cache: the kernel package is downloaded once per kernel version (about 6 s),
# and the initramfs is rebuilt only when one of its inputs changes, so every later call returns at
# once. Needs the packages ./test.sh installs (ignition, busybox-static) and apt's package lists.
set -euo pipefail

if [ $# -ne 1 ]; then
  echo "usage: $0 OUTDIR" >&2
  exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$1"
out=$(cd "$1" && pwd)
init_script=$here/initramfs-init.sh
# Modules, each after those it depends on: the NIC, then SCSI disks on virtio-scsi (sd_mod needs
# t10-pi, which needs the CRC algorithms).
MODULES="e1000 crct10dif_common crct10dif_generic crc-t10dif crc64 crc64_rocksoft_generic
crc64-rocksoft t10-pi scsi_common scsi_mod sd_mod virtio_ring virtio virtio_pci_legacy_dev
virtio_pci_modern_dev virtio_pci virtio_scsi"
ignition=/usr/lib/dracut/modules.d/30ignition/ignition
busybox=/bin/busybox

for file in "$ignition" "$busybox"; do
  if [ ! -x "$file" ]; then
    echo "mkinitramfs.sh: $file is missing: run ./test.sh, which installs ignition and busybox-static" >&2
    exit 1
  fi
done
# The initramfs has no libraries for busybox: Debian's dynamically linked `busybox` package would
# boot into "not found" for /init.
if ldd "$busybox" >/dev/null 2>&1; then
  echo "mkinitramfs.sh: $busybox is dynamically linked: install busybox-static (./test.sh)" >&2
  exit 1
fi

# Test binaries may run in parallel (and several cargo runs may share a target directory); the
# first builds, the others wait and then find the cache filled.
exec 9>"$out/.lock"
flock 9

tmp=$(mktemp -d "$out/tmp.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# The package `linux-image-amd64` depends on the current kernel package, so following its
# Depends tracks Debian's kernel updates without naming a version here.
current_kernel_package() {
  apt-cache depends linux-image-amd64 2>/dev/null |
    sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*\)$/\1/p' | head -n 1
}

download_kernel() {
  (cd "$tmp" && apt-get download -qq -o APT::Sandbox::User=root "$1")
}

# Takes only vmlinuz and the $MODULES out of the package: `dpkg-deb -x` would write its whole
# 400 MB module tree.
extract_kernel() {
  local package=$1 dest=$2 ko module
  local patterns=()
  for module in $MODULES; do
    patterns+=("*/$module.ko*")
  done
  mkdir -p "$tmp/x" "$dest.new/modules"
  dpkg-deb --fsys-tarfile "$tmp/$package"_*.deb |
    tar -x -C "$tmp/x" --wildcards --wildcards-match-slash './boot/vmlinuz-*' "${patterns[@]}"
  rm -f "$tmp/$package"_*.deb
  for module in $MODULES; do
    ko=$(find "$tmp/x" -name "$module.ko*" | head -n 1)
    case $ko in
      *.ko) cp "$ko" "$dest.new/modules/$module.ko" ;;
      # busybox insmod loads only plain modules; newer Debian kernels compress them.
      *.ko.xz) xz -dc "$ko" >"$dest.new/modules/$module.ko" ;;
      *.ko.zst) zstd -qdc "$ko" >"$dest.new/modules/$module.ko" ;;
      *)
        echo "mkinitramfs.sh: no $module.ko in $package" >&2
        exit 1
        ;;
    esac
  done
  echo $MODULES >"$dest.new/modules/order"
  cp "$tmp"/x/boot/vmlinuz-* "$dest.new/vmlinuz"
  rm -rf "$tmp/x" "$dest"
  mv "$dest.new" "$dest"
}

package=$(current_kernel_package)
if [ -z "$package" ] || [ "$(cat "$out/kernels/$package/modules/order" 2>/dev/null)" != "$(echo $MODULES)" ]; then
  if [ -z "$package" ] || ! download_kernel "$package"; then
    # No package lists yet, or stale ones naming a kernel the mirror has dropped (a security
    # update replaces it): refresh them once and resolve again.
    echo "mkinitramfs.sh: refreshing apt's package lists to find the current kernel" >&2
    apt-get update -qq
    package=$(current_kernel_package)
    if [ -z "$package" ]; then
      echo "mkinitramfs.sh: apt-cache finds no kernel package behind linux-image-amd64" >&2
      exit 1
    fi
    download_kernel "$package"
  fi
  extract_kernel "$package" "$out/kernels/$package"
  echo "mkinitramfs.sh: downloaded $package" >&2
fi
kernel=$out/kernels/$package

# Everything that goes into the initramfs; the image is rebuilt only when this changes.
stamp=$(
  {
    echo "$package"
    "$ignition" -version
    dpkg-query -W -f '${Version}\n' busybox-static
    cat "$init_script" "$0" "$kernel"/modules/*
  } | sha256sum | cut -d ' ' -f 1
)
if [ -f "$out/initrd.img" ] && [ -f "$out/vmlinuz" ] && [ "$(cat "$out/stamp" 2>/dev/null)" = "$stamp" ]; then
  exit 0
fi

root=$tmp/root
mkdir -p "$root"/{bin,dev,proc,sys,run,tmp,sysroot,etc,usr/bin,usr/sbin,lib/modules}
cp "$busybox" "$root/bin/busybox"
for applet in $("$busybox" --list); do
  [ "$applet" = busybox ] || ln -s busybox "$root/bin/$applet"
done
install -m 0755 "$init_script" "$root/init"
cp "$kernel"/modules/* "$root/lib/modules/"
install -m 0755 "$ignition" "$root/usr/bin/ignition"
# The runner is a dynamically linked Go binary (libblkid, libc): copy what ldd resolves, at the
# same paths, including the loader.
for lib in $(ldd "$ignition" | grep -o '/[^ ]*'); do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done
# A kindling binary links these too (a unit the harness runs from what Ignition wrote).
for lib in libgcc_s.so.1 libm.so.6; do
  path=$(/sbin/ldconfig -p | sed -n "s|^[[:space:]]*$lib (libc6,x86-64) => ||p" | head -n 1)
  if [ -z "$path" ]; then
    echo "mkinitramfs.sh: ldconfig finds no $lib" >&2
    exit 1
  fi
  mkdir -p "$root$(dirname "$path")"
  cp -L "$path" "$root$path"
done
# Debian builds Ignition with SELinux relabelling on; this no-op stands in for setfiles, which
# reads the list of paths to relabel from stdin. See real-clients.md A.4.
printf '#!/bin/sh\ncat >/dev/null\n' >"$root/usr/sbin/setfiles"
chmod 0755 "$root/usr/sbin/setfiles"

# The host has no cpio; busybox's writes the newc format the kernel unpacks.
(cd "$root" && find . -mindepth 1 | LC_ALL=C sort | "$busybox" cpio -o -H newc) |
  gzip -6 >"$tmp/initrd.img"
cp "$kernel/vmlinuz" "$tmp/vmlinuz"
mv "$tmp/vmlinuz" "$out/vmlinuz"
mv "$tmp/initrd.img" "$out/initrd.img"
echo "$stamp" >"$out/stamp"
echo "mkinitramfs.sh: built $out/initrd.img for $package" >&2
