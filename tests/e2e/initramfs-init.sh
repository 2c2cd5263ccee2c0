#!/bin/busybox sh
# /init of the test initramfs that tests/e2e/mkinitramfs.sh builds: a network-booted machine that
# does what a real one does first, fetching its Ignition config and applying it, then tells the
# test what happened and powers off.
#
# Kernel arguments it reads:
#   ignition.config.url=URL   read by the real Ignition itself (platform metal); the init runs
#                             Ignition's fetch and files stages with /sysroot as the root
#   harness.report=URL        after Ignition, GET URL?event=ignition&rc=..&hostname=..&... (wget)
#   harness.sha256=PATH       add &sha256=<digest of PATH under /sysroot> to the report
#   harness.run-unit=NAME     after Ignition, stand in for systemd: run the ExecStart of the
#                             unit NAME that Ignition wrote, its program taken from /sysroot
#
# Everything the test reads from the serial console starts with "HARNESS: ". The QEMU run ends
# with `poweroff -f` whatever happens; an unexpected failure still powers off through the EXIT
# trap, and the kernel's panic=-1 covers the init dying outright.
set -euo pipefail
export PATH=/bin:/usr/bin:/usr/sbin

say() { echo "HARNESS: $*"; }
uptime_s() { cut -d ' ' -f 1 /proc/uptime; }
trap 'say "init failed (rc=$?), powering off"; poweroff -f' EXIT

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /run
# The initramfs has no /dev/console node, so the kernel may have started us without a console.
exec </dev/null >/dev/console 2>&1
say "init started, uptime $(uptime_s)s"

config_url=
report_url=
sha_path=
run_unit=
# Globbing off: URLs contain `?` and `*` could appear in a query.
set -f
for arg in $(cat /proc/cmdline); do
  case $arg in
    ignition.config.url=*) config_url=${arg#*=} ;;
    harness.report=*) report_url=${arg#*=} ;;
    harness.sha256=*) sha_path=${arg#*=} ;;
    harness.run-unit=*) run_unit=${arg#*=} ;;
  esac
done
set +f

for module in $(cat /lib/modules/order); do
  insmod "/lib/modules/$module.ko"
done
ip link set lo up
# udhcpc configures nothing itself: it runs this script with the lease in its environment.
cat >/run/udhcpc.script <<'EOF'
#!/bin/sh
case $1 in
  bound | renew)
    ifconfig "$interface" "$ip" netmask "$subnet" up
    [ -z "${router:-}" ] || route add default gw "$router" dev "$interface"
    [ -z "${hostname:-}" ] || hostname "$hostname"
    echo "HARNESS: dhcp ok: $ip/$subnet"
    ;;
esac
EOF
chmod 0755 /run/udhcpc.script
# udhcpc does not bring the link up itself: on a down eth0 it retries past its -t/-T bound.
ip link set eth0 up
if ! udhcpc -i eth0 -s /run/udhcpc.script -n -q -t 10 -T 1; then
  say "dhcp failed"
fi

rc=skipped
if [ -n "$config_url" ]; then
  # Ignition's default cache and state paths are under /run; it expects the directory there.
  mkdir -p /run/ignition /sysroot/etc/selinux
  # Debian's Ignition reads SELINUXTYPE before it relabels (through the no-op setfiles).
  echo SELINUXTYPE=targeted >/sysroot/etc/selinux/config
  for stage in fetch files; do
    rc=0
    ignition -platform metal -stage "$stage" -root /sysroot -log-to-stdout || rc=$?
    say "ignition $stage rc=$rc"
    [ "$rc" = 0 ] || break
  done
  say "sysroot listing follows"
  # One line per entry, the path last: "landed file MODE SHA256 PATH", "landed dir MODE PATH",
  # "landed link MODE PATH -> TARGET". etc/selinux is the seed above, not Ignition's.
  (cd /sysroot && find . -mindepth 1 ! -path ./etc/selinux ! -path './etc/selinux/*' | sort) |
    while read -r entry; do
      path=${entry#.}
      mode=$(stat -c %a "/sysroot$path")
      if [ -L "/sysroot$path" ]; then
        say "landed link $mode $path -> $(readlink "/sysroot$path")"
      elif [ -d "/sysroot$path" ]; then
        say "landed dir $mode $path"
      else
        say "landed file $mode $(sha256sum <"/sysroot$path" | cut -d ' ' -f 1) $path"
      fi
    done
fi

unit_file=/sysroot/etc/systemd/system/$run_unit
if [ -n "$run_unit" ] && [ -f "$unit_file" ]; then
  command=$(sed -n 's/^ExecStart=//p' "$unit_file" | head -n 1)
  say "unit $run_unit starts: $command"
  unit_rc=0
  set -f
  # shellcheck disable=SC2086 # ExecStart's words, as systemd splits them (no quoting here)
  /sysroot$command || unit_rc=$?
  set +f
  say "unit $run_unit exited rc=$unit_rc"
fi

if [ -n "$report_url" ]; then
  name=$(cat /sysroot/etc/hostname 2>/dev/null || hostname)
  query="event=ignition&rc=$rc&hostname=$name&uptime=$(uptime_s)"
  if [ -n "$sha_path" ]; then
    sha=$(sha256sum <"/sysroot$sha_path" 2>/dev/null | cut -d ' ' -f 1) || sha=missing
    query="$query&sha256=${sha:-missing}"
  fi
  # The report's answer does not matter (a static test server answers 404); its arrival does.
  report_rc=0
  # Bounded with timeout(1): busybox-static 1.35's `wget -T` segfaults.
  timeout 15 wget -q -O /dev/null "$report_url?$query" || report_rc=$?
  say "report sent, wget rc=$report_rc"
fi

say "done, uptime $(uptime_s)s, powering off"
trap - EXIT
poweroff -f
