#!/usr/bin/env bash
# Installs the system packages the container tests and the migration benchmark need
# (Debian), only as root and only when missing. Without root it prints what is missing
# and the podman tests skip.
#
#   podman          the container engine; its API service is what the container runtime
#                   talks to (edgechain.runtime.podman starts a private one per node)
#   runc            the OCI runtime podman is configured to use (crun is not required)
#   busybox-static  a *static* busybox: the sample image is FROM scratch + busybox, so
#                   the dynamic `busybox` package would not run in it
#   util-linux      setpriv, with which the process runtime ties apps to their node
#   iproute2        ip netns: one network namespace per testnet node (--netns, chaos)
#   iptables        the chaos harness's partitions and packet loss, inside the namespaces
#   e2fsprogs       mkfs.ext4: small loop-mounted disks (state quotas, the full-disk fault)
#   chromium, chromium-driver
#                   headless Chromium and its WebDriver: the dashboard's browser test
#                   (tests/api/test_dashboard_browser.py drives it with selenium)
#
# Nothing else is set up here: the containers.conf podman needs on these VMs (runc,
# cgroupfs, explicit ulimits) is written by edgechain.runtime.podman next to the
# service's own storage, and pointed at through CONTAINERS_CONF.
set -euo pipefail
need=()
command -v podman >/dev/null 2>&1 || need+=(podman)
command -v runc >/dev/null 2>&1 || need+=(runc)
dpkg -s busybox-static >/dev/null 2>&1 || need+=(busybox-static)
command -v setpriv >/dev/null 2>&1 || need+=(util-linux)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v iptables >/dev/null 2>&1 || need+=(iptables)
command -v mkfs.ext4 >/dev/null 2>&1 || need+=(e2fsprogs)
test -x /usr/bin/chromium || need+=(chromium)
test -x /usr/bin/chromedriver || need+=(chromium-driver)
if [ ${#need[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" != 0 ]; then
  echo "system-deps: not root, cannot install ${need[*]}; the tests needing them will skip" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
