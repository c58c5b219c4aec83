#!/bin/bash
# Build sfcloud's own test guest: a tiny disk image that boots under BIOS and under UEFI, made only
# from Debian packages.
#
#   deploy/guest-image/build.sh OUTDIR
#
# Writes OUTDIR/disk.qcow2 (compressed qcow2: MBR, one FAT16 partition, syslinux for BIOS and
# syslinux.efi as EFI/BOOT/BOOTX64.EFI for UEFI, the Debian cloud kernel and a busybox initramfs), OUTDIR/vmlinuz and OUTDIR/initrd.gz (for direct kernel boot),
# and OUTDIR/image.json (what went in).
#
# The guest runs entirely from its initramfs; the disk only carries the boot loader, so the guest
# never writes to it and an overlay stays tiny. On the serial console (ttyS0, 115200) it prints
# machine-readable lines that tests wait for:
#
#   SFCLOUD-GUEST-UP                       userspace started
#   SFCLOUD-HOSTNAME: <name>|none          from the config drive (label config-2)
#   SFCLOUD-KEY: <key>                     one per value of public_keys
#   SFCLOUD-IP: <ethN> <addr>/<prefix>|none  one per NIC, after DHCP
#   SFCLOUD-USERDATA: ran rc=<rc>          user_data starting with #! was run
#   SFCLOUD-USERDATA: <first line>|none    otherwise
#   SFCLOUD-READY                          consoles get their shells next
#   SFCLOUD-HOTPLUG: <ethN> <addr>/<prefix>|none  a NIC plugged in later, after DHCP
#   SFCLOUD-UNPLUG: <ethN>                 a NIC unplugged
#   SFCLOUD-SHUTDOWN                       poweroff/reboot has begun
#
# User data runs after the network is configured, because scripts usually want the network.
#
# Needs: apt-get (with package lists), dpkg-deb, busybox-static, kmod, cpio, gzip, fdisk (sfdisk),
# dosfstools, mtools, syslinux, syslinux-efi, qemu-utils. No root-only operations: no mounts, no loop
# devices.
#
# Environment (all optional):
#   SFCLOUD_KERNEL_DEB   a linux-image-*-cloud-amd64 .deb to use instead of downloading one
#   SFCLOUD_DEB_CACHE    directory to keep the downloaded kernel .deb in between builds
#   SFCLOUD_BUSYBOX      the static busybox to put in the guest (default /bin/busybox)
set -euo pipefail

die() { echo "build.sh: $*" >&2; exit 1; }

[ $# -eq 1 ] || die "usage: $0 OUTDIR"

DISK_MB=64
# virtio_pci first and sr_mod and sd_mod before the disk controllers, so that cdroms and SCSI
# disks found while a controller's module initialises are bound at once and exist when modprobe
# returns. (NVMe is built into the kernel; it has no AHCI and no USB at all.)
GUEST_MODULES=(virtio_pci sr_mod sd_mod virtio_blk virtio_net virtio_scsi virtio_console ata_piix
    isofs nls_utf8 button evdev)
BUSYBOX=${SFCLOUD_BUSYBOX:-/bin/busybox}

for tool in apt-get apt-cache dpkg-deb depmod modprobe cpio gzip sfdisk mkfs.vfat mcopy mmd syslinux \
    qemu-img; do
    command -v "$tool" >/dev/null || die "missing tool: $tool"
done
[ -x "$BUSYBOX" ] || die "no busybox at $BUSYBOX (apt-get install busybox-static)"
# The initramfs has no libc, so a dynamically linked busybox would not even start.
if ldd "$BUSYBOX" >/dev/null 2>&1; then
    die "$BUSYBOX is dynamically linked; install busybox-static"
fi
SYSLINUX_MBR=/usr/lib/syslinux/mbr/mbr.bin
[ -f "$SYSLINUX_MBR" ] || die "missing $SYSLINUX_MBR (apt-get install syslinux-common)"
SYSLINUX_EFI=/usr/lib/SYSLINUX.EFI/efi64/syslinux.efi
LDLINUX_EFI=/usr/lib/syslinux/modules/efi64/ldlinux.e64
[ -f "$SYSLINUX_EFI" ] || die "missing $SYSLINUX_EFI (apt-get install syslinux-efi)"
[ -f "$LDLINUX_EFI" ] || die "missing $LDLINUX_EFI (apt-get install syslinux-common)"

mkdir -p "$1"
OUTDIR=$(cd "$1" && pwd)
WORK=$(mktemp -d "$OUTDIR/.work.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# ---- kernel -----------------------------------------------------------------------------------
kernel_deb=${SFCLOUD_KERNEL_DEB:-}
if [ -z "$kernel_deb" ]; then
    # The metapackage always depends on the current ABI's image package; ask apt which one.
    kpkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null |
        awk '$1 == "Depends:" && $2 ~ /^linux-image-.*-cloud-amd64$/ { print $2; exit }')
    [ -n "$kpkg" ] || die "apt does not know linux-image-cloud-amd64 (run apt-get update?)"
    kpkg_version=$(apt-cache show --no-all-versions "$kpkg" | sed -n 's/^Version: //p')
    deb_dir=${SFCLOUD_DEB_CACHE:-$WORK}
    mkdir -p "$deb_dir"
    # apt-get download checks the hash of a file already present and skips the download. As
    # root it warns that the _apt user cannot write here; that is harmless.
    (cd "$deb_dir" && apt-get download -q=2 "$kpkg") 2>&1 |
        { grep -v 'unsandboxed as root' || true; } >&2
    kernel_deb=$deb_dir/${kpkg}_${kpkg_version}_amd64.deb
fi
[ -f "$kernel_deb" ] || die "kernel package not found: $kernel_deb"
kpkg=$(dpkg-deb -f "$kernel_deb" Package)
kpkg_version=$(dpkg-deb -f "$kernel_deb" Version)

KROOT=$WORK/kernel
dpkg-deb -x "$kernel_deb" "$KROOT"
kver=$(ls -1 "$KROOT/lib/modules")
[ "$(echo "$kver" | wc -l)" -eq 1 ] || die "expected one kernel in $kernel_deb, found: $kver"
# The package leaves modules.dep to its postinst; modprobe --show-depends needs it.
depmod -b "$KROOT" "$kver"
cp "$KROOT/boot/vmlinuz-$kver" "$WORK/vmlinuz"

# ---- initramfs tree ---------------------------------------------------------------------------
ROOT=$WORK/root
mkdir -p "$ROOT"/{bin,sbin,usr/bin,usr/sbin,etc/init.d,etc/acpi/PWRF,proc,sys,dev,run,tmp,root}
mkdir -p "$ROOT"/{mnt/config,var/log,lib/modules/"$kver"}
chmod 1777 "$ROOT/tmp"
chmod 0700 "$ROOT/root"

cp "$BUSYBOX" "$ROOT/bin/busybox"
for applet in $("$BUSYBOX" --list-full); do
    [ -e "$ROOT/$applet" ] || ln -s /bin/busybox "$ROOT/$applet"
done
# The kernel starts /init from an initramfs; busybox picks its applet from argv[0]'s basename.
ln -s /bin/busybox "$ROOT/init"

for module in "${GUEST_MODULES[@]}"; do
    # Each line is "insmod /path/to/dep.ko [params]", dependencies first.
    modprobe -d "$KROOT" -S "$kver" --show-depends "$module" |
        awk '$1 == "insmod" { print $2 }' |
        while read -r ko; do
            rel=${ko#"$KROOT"}
            mkdir -p "$ROOT$(dirname "$rel")"
            cp -n "$ko" "$ROOT$rel"
        done
done
for f in modules.order modules.builtin modules.builtin.modinfo; do
    cp "$KROOT/lib/modules/$kver/$f" "$ROOT/lib/modules/$kver/"
done
depmod -b "$ROOT" "$kver"
printf '%s\n' "${GUEST_MODULES[@]}" > "$ROOT/etc/modules"

cat > "$ROOT/etc/inittab" <<'EOF'
::sysinit:/etc/init.d/rcS
ttyS0::respawn:-/bin/sh
tty1::respawn:-/bin/sh
::ctrlaltdel:/sbin/reboot
::shutdown:/etc/init.d/rcK
EOF

printf 'root:x:0:0:root:/root:/bin/sh\n' > "$ROOT/etc/passwd"
printf 'root:x:0:\n' > "$ROOT/etc/group"
printf '127.0.0.1 localhost\n' > "$ROOT/etc/hosts"
ln -s /proc/mounts "$ROOT/etc/mtab"
cat > "$ROOT/etc/profile" <<'EOF'
export PATH=/sbin:/bin:/usr/sbin:/usr/bin
export HOME=/root
# \h is expanded at every prompt, so it follows the hostname set from the config drive.
export PS1='root@\h:\w# '
cd /root
EOF

# user_data scripts often say #!/bin/bash; ash understands the common subset of bash.
cat > "$ROOT/bin/bash" <<'EOF'
#!/bin/sh
exec /bin/sh "$@"
EOF

# A JSON flattener in awk: prints "path<TAB>value" for every scalar, with object keys and array
# indexes joined by "/" (public_keys/mykey, keys/0/data). It relies on what the config drive
# promises: no string contains a double quote, so a string ends at the next one.
cat > "$ROOT/sbin/sfcloud-json-flat" <<'EOF'
#!/bin/sh
exec awk '
function path(  p, d) {
    p = ""
    for (d = 1; d <= depth; d++)
        p = p (d > 1 ? "/" : "") (kind[d] == "{" ? key[d] : idx[d])
    return p
}
{ doc = doc $0 "\n" }
END {
    n = length(doc); i = 1; depth = 0; want_key = 0
    while (i <= n) {
        c = substr(doc, i, 1)
        if (c == " " || c == "\t" || c == "\n" || c == "\r" || c == ":") { i++; continue }
        if (c == "{" || c == "[") {
            depth++; kind[depth] = c; idx[depth] = 0; key[depth] = ""
            want_key = (c == "{"); i++; continue
        }
        if (c == "}" || c == "]") { depth--; want_key = 0; i++; continue }
        if (c == ",") {
            if (kind[depth] == "{") want_key = 1; else idx[depth]++
            i++; continue
        }
        if (c == "\"") {
            rest = substr(doc, i + 1); j = index(rest, "\"")
            if (j == 0) exit 1
            tok = substr(rest, 1, j - 1); i += j + 1
            gsub(/\\\//, "/", tok)
            # Keys pasted from a file often end in a newline, which JSON writes as \n.
            sub(/(\\[nr])+$/, "", tok)
        } else {
            j = i
            while (j <= n && index(",}] \t\r\n", substr(doc, j, 1)) == 0) j++
            tok = substr(doc, i, j - i); i = j
        }
        if (want_key) { key[depth] = tok; want_key = 0; continue }
        print path() "\t" tok
    }
}' "$@"
EOF

cat > "$ROOT/etc/init.d/rcS" <<'EOF'
#!/bin/sh
# Run once by busybox init (stdout is the console) before the console shells start.
export PATH=/sbin:/bin:/usr/sbin:/usr/bin

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
# Kernel messages written to the serial port while we print could split our marker lines;
# they stay readable with dmesg.
dmesg -n 1
# Guest uptimes at a few points, for boot-time measurements from the console log alone.
timing() { echo "sfcloud-init: timing $1 $(cut -d' ' -f1 /proc/uptime)"; }

echo SFCLOUD-GUEST-UP
timing up
echo "sfcloud-init: kernel $(uname -r)"
hostname sfcloud-guest

while read -r m; do
    modprobe "$m" || echo "sfcloud-init: could not load module $m"
done < /etc/modules
acpid -c /etc/acpi -l /var/log/acpid.log

CD=/mnt/config
META=$CD/openstack/latest/meta_data.json
USERDATA=$CD/openstack/latest/user_data

mount_config_drive() {
    dev=$(findfs LABEL=config-2 2>/dev/null) && mount -t iso9660 -o ro "$dev" "$CD" 2>/dev/null &&
        return 0
    # findfs can miss a drive (no label probe for some devices): try each candidate by content.
    for dev in /dev/sr* /dev/vd* /dev/sd* /dev/nvme*n1; do
        [ -b "$dev" ] || continue
        mount -t iso9660 -o ro "$dev" "$CD" 2>/dev/null || continue
        [ -f "$META" ] && return 0
        umount "$CD"
    done
    return 1
}

# Block devices normally exist once modprobe returns (module init waits for the controllers'
# probes); the retries only cover stragglers, and cost about 1 s when there is no drive at all.
found=
for _ in 1 2 3; do
    if mount_config_drive; then found=1; break; fi
    sleep 0.2
done

hn=
if [ -n "$found" ] && [ -f "$META" ]; then
    sfcloud-json-flat "$META" > /run/meta_data.flat
    hn=$(awk -F '\t' '$1 == "hostname" { print $2; exit }' /run/meta_data.flat)
    [ -n "$hn" ] || hn=$(awk -F '\t' '$1 == "name" { print $2; exit }' /run/meta_data.flat)
fi
if [ -n "$hn" ]; then
    hostname "$hn" || echo "sfcloud-init: could not set hostname"
    echo "$hn" > /etc/hostname
    echo "127.0.1.1 $hn" >> /etc/hosts
    echo "SFCLOUD-HOSTNAME: $hn"
else
    echo "SFCLOUD-HOSTNAME: none"
fi

if [ -f /run/meta_data.flat ]; then
    mkdir -m 0700 /root/.ssh
    awk -F '\t' '{ n = split($1, p, "/") } n == 2 && p[1] == "public_keys" {
        print substr($0, index($0, "\t") + 1) }' /run/meta_data.flat > /root/.ssh/authorized_keys
    while IFS= read -r k; do
        echo "SFCLOUD-KEY: $k"
    done < /root/.ssh/authorized_keys
fi

timing network-start
ip link set lo up
ifaces=$(cd /sys/class/net && ls -d eth* 2>/dev/null)
for i in $ifaces; do
    ip link set "$i" up
    # All NICs in parallel; 3 DISCOVERs 1 s apart, so a NIC without DHCP costs boot about
    # 3 s. Then udhcpc goes to the background either way: with a lease to renew it, without
    # one to keep asking every few seconds, as a real guest's DHCP client does (its NIC may
    # be plugged in a moment after the guest starts).
    udhcpc -i "$i" -b -t 3 -T 1 -A 3 -O mtu -x "hostname:$(hostname)" \
        -s /etc/udhcpc.script -p "/run/udhcpc.$i.pid" > "/var/log/udhcpc.$i.log" 2>&1 &
done
wait
for i in $ifaces; do
    addr=$(ip -4 -o addr show dev "$i" | awk '{ print $4; exit }')
    echo "SFCLOUD-IP: $i ${addr:-none}"
done
timing network-done

if [ -f "$USERDATA" ] && [ "$(head -c 2 "$USERDATA")" = '#!' ]; then
    cp "$USERDATA" /tmp/user_data
    chmod 0700 /tmp/user_data
    /tmp/user_data < /dev/null
    echo "SFCLOUD-USERDATA: ran rc=$?"
elif [ -s "$USERDATA" ]; then
    echo "SFCLOUD-USERDATA: $(head -n 1 "$USERDATA" | tr -d '\r' | cut -c 1-200)"
else
    echo "SFCLOUD-USERDATA: none"
fi

# NICs plugged in from now on: busybox's uevent runs a handler for each kernel event.
uevent /sbin/sfcloud-uevent &

timing ready
echo SFCLOUD-READY
EOF

cat > "$ROOT/sbin/sfcloud-uevent" <<'EOF'
#!/bin/sh
# Run by busybox uevent for each kernel event (in its environment). A NIC plugged in gets DHCP,
# as a cloud image's udev rules would do; its address is announced on the console.
[ "$SUBSYSTEM" = net ] || exit 0
case "$INTERFACE" in eth*) ;; *) exit 0 ;; esac
case "$ACTION" in
    add)
        ip link set "$INTERFACE" up
        udhcpc -i "$INTERFACE" -n -q -t 10 -T 1 -O mtu -x "hostname:$(hostname)" \
            -s /etc/udhcpc.script > "/var/log/udhcpc.$INTERFACE.log" 2>&1
        addr=$(ip -4 -o addr show dev "$INTERFACE" | awk '{ print $4; exit }')
        echo "SFCLOUD-HOTPLUG: $INTERFACE ${addr:-none}" > /dev/console
        ;;
    remove)
        echo "SFCLOUD-UNPLUG: $INTERFACE" > /dev/console
        ;;
esac
EOF

cat > "$ROOT/etc/init.d/rcK" <<'EOF'
#!/bin/sh
# Run by busybox init on poweroff and reboot, before it signals every process.
echo SFCLOUD-SHUTDOWN
umount /mnt/config 2>/dev/null
umount -a -r 2>/dev/null
sync
EOF

cat > "$ROOT/etc/udhcpc.script" <<'EOF'
#!/bin/sh
# Called by udhcpc with $1 = deconfig|bound|renew|leasefail|nak and the lease in the environment
# ($mask is a prefix length in busybox).
# shellcheck disable=SC2154
case "$1" in
    deconfig)
        ip -4 addr flush dev "$interface"
        ip link set "$interface" up
        rm -f "/run/resolv.$interface"
        ;;
    bound|renew)
        [ "$1" = bound ] && ip -4 addr flush dev "$interface"
        ip addr replace "$ip/${mask:-24}" broadcast "${broadcast:-+}" dev "$interface"
        [ -n "$mtu" ] && ip link set dev "$interface" mtu "$mtu"
        if [ -n "$router" ]; then
            # One default route per NIC; the lowest-numbered NIC wins through its metric.
            metric=$((100 + $(cat "/sys/class/net/$interface/ifindex")))
            # shellcheck disable=SC2086 # split the router list, keep the first
            set -- $router
            ip route replace default via "$1" dev "$interface" metric "$metric"
        fi
        : > "/run/resolv.$interface"
        for d in $dns; do echo "nameserver $d" >> "/run/resolv.$interface"; done
        ;;
esac
cat /run/resolv.* > /etc/resolv.conf 2>/dev/null
exit 0
EOF

cat > "$ROOT/etc/acpi/PWRF/00000080" <<'EOF'
#!/bin/sh
# busybox acpid runs <confdir>/PWRF/00000080 when the ACPI power button is pressed.
echo "sfcloud-init: ACPI power button, powering off" > /dev/console
exec poweroff
EOF

chmod 0755 "$ROOT/etc/init.d/rcS" "$ROOT/etc/init.d/rcK" "$ROOT/etc/udhcpc.script" \
    "$ROOT/etc/acpi/PWRF/00000080" "$ROOT/bin/bash" "$ROOT/sbin/sfcloud-json-flat" \
    "$ROOT/sbin/sfcloud-uevent"

# -R 0:0: the guest must see root-owned files whoever runs the build.
(cd "$ROOT" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) | gzip -9 -n \
    > "$WORK/initrd.gz"

# ---- disk: MBR + one bootable FAT16 partition holding syslinux, kernel and initramfs ---------
# The same partition boots both ways: BIOS runs the MBR, then syslinux from the partition's boot
# sector; UEFI (OVMF) finds a FAT filesystem with the removable-media path EFI/BOOT/BOOTX64.EFI,
# which is syslinux.efi, reading the same configuration next to it.
cat > "$WORK/syslinux.cfg" <<'EOF'
SERIAL 0 115200
DEFAULT sfcloud
PROMPT 0
TIMEOUT 0
LABEL sfcloud
  LINUX /vmlinuz
  INITRD /initrd.gz
  APPEND console=tty1 console=ttyS0,115200n8
EOF

part_start=2048                                   # sectors: 1 MiB, the usual alignment
part_sectors=$((DISK_MB * 2048 - part_start))
truncate -s "${DISK_MB}M" "$WORK/disk.raw"
echo "start=$part_start, type=6, bootable" | sfdisk -q "$WORK/disk.raw"
# The filesystem is made as a separate file and copied in; -h tells FAT (and so syslinux)
# where the partition starts on the disk. mkfs.vfat -C takes the size in KiB.
mkfs.vfat -F 16 -n SFCLOUD -h "$part_start" -C "$WORK/fat.img" $((part_sectors / 2)) >/dev/null
mcopy -i "$WORK/fat.img" "$WORK/vmlinuz" "$WORK/initrd.gz" "$WORK/syslinux.cfg" ::
mmd -i "$WORK/fat.img" ::/EFI ::/EFI/BOOT
mcopy -i "$WORK/fat.img" "$SYSLINUX_EFI" ::/EFI/BOOT/BOOTX64.EFI
mcopy -i "$WORK/fat.img" "$LDLINUX_EFI" "$WORK/syslinux.cfg" ::/EFI/BOOT/
syslinux --install "$WORK/fat.img"
dd if="$WORK/fat.img" of="$WORK/disk.raw" bs=512 seek="$part_start" conv=notrunc,sparse \
    status=none
dd if="$SYSLINUX_MBR" of="$WORK/disk.raw" bs=440 count=1 conv=notrunc status=none
qemu-img convert -c -f raw -O qcow2 "$WORK/disk.raw" "$WORK/disk.qcow2"

busybox_version=$("$BUSYBOX" 2>&1 | sed -n '1s/^BusyBox v\([^ ]*\).*/\1/p')
cat > "$WORK/image.json" <<EOF
{
  "kernel_version": "$kver",
  "kernel_package": "$kpkg",
  "kernel_package_version": "$kpkg_version",
  "busybox_version": "$busybox_version",
  "disk_virtual_size_mib": $DISK_MB,
  "console": "ttyS0,115200n8",
  "firmware": ["bios", "uefi"],
  "files": ["disk.qcow2", "vmlinuz", "initrd.gz"]
}
EOF

# Outputs are moved in only once all of them exist; deploy/guestimage.py adds the atomicity.
chmod 0644 "$WORK"/{disk.qcow2,vmlinuz,initrd.gz,image.json}
for f in disk.qcow2 vmlinuz initrd.gz image.json; do
    mv -f "$WORK/$f" "$OUTDIR/$f"
done
echo "built $OUTDIR/disk.qcow2 (kernel $kver)"
