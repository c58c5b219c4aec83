#!/usr/bin/env bash
# Install what sfcloud needs on a Debian 12 machine, skipping what is there.
#
#   deploy/install.sh          the Debian packages and a venv with sfcloud
#   deploy/install.sh --test   also the test tools (Playwright, Chromium, sf-client)
#
# Safe to run again and again: it only installs what is missing, and only
# reinstalls the Python packages when pyproject.toml changed.
set -euo pipefail

cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
WITH_TEST=0
WITH_LAB=0
if [ "${1:-}" = "--test" ]; then
    WITH_TEST=1
elif [ "${1:-}" = "--lab" ]; then
    # make test-lab: the test tools, Ansible (the deploy extra), and what the
    # lab's hosts run (they share this machine's /usr). Installing them must
    # not start their daemons: keep a policy-rc.d that exits 101.
    WITH_TEST=1
    WITH_LAB=1
fi

PACKAGES=(
    # virtualisation (ovmf: UEFI and secure boot for guests)
    qemu-system-x86 qemu-utils libvirt-daemon-system libvirt-dev ovmf
    # state, networking (ping: `network ping` from a network's namespace)
    etcd-server etcd-client dnsmasq-base iproute2 nftables iputils-ping
    # security groups: ending the tracked connections a removed rule allowed
    conntrack
    # building libvirt-python, and the venv itself
    python3-venv python3-dev gcc pkg-config
    # the small guest image the demo and the tests boot
    busybox-static syslinux syslinux-common syslinux-efi mtools dosfstools fdisk kmod cpio
)
if [ "$WITH_TEST" = 1 ]; then
    PACKAGES+=(chromium)
    # npm fetches axe-core for the accessibility tests (e2e/axe.py), from the npm registry
    # into var/; a Node.js that brings its own npm is used as it is.
    command -v npm >/dev/null || PACKAGES+=(npm)
fi
if [ "$WITH_LAB" = 1 ]; then
    PACKAGES+=(openssh-server postgresql redis-server curl)
fi

missing=()
for package in "${PACKAGES[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$package" 2>/dev/null || true)
    [ "$status" = "install ok installed" ] || missing+=("$package")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "Installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    # Debian's etcd-server starts its own etcd on 2379 when installed (where an
    # init system exists); ours runs on other ports with its own data dir.
    apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

if [ ! -x "$VENV/bin/python" ]; then
    echo "Creating the Python environment in $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --upgrade pip
fi

extras=""
stamp="$VENV/.sfcloud-installed"
if [ "$WITH_TEST" = 1 ]; then
    # The test tools, and the packages of several-portal deployments (their
    # settings are tested too).
    extras="[test,multi]"
    stamp="$stamp-test"
fi
if [ "$WITH_LAB" = 1 ]; then
    extras="[test,multi,deploy]"
    stamp="$stamp-lab"
fi
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "Installing sfcloud's Python packages into $VENV"
    "$VENV/bin/pip" install -q -e ".$extras"
    echo "$want" > "$stamp"
fi
