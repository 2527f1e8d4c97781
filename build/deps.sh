#!/usr/bin/env bash
# Installs the Debian packages that are missing for one purpose:
#   build/deps.sh run       build the module and run it (quick start)
#   build/deps.sh package   also what build/package.sh needs (the .deb)
#   build/deps.sh test      also everything the test suite needs
# Installs only what is missing, so a second run costs nothing. Needs root
# (or sudo) when something is missing.
set -euo pipefail

purpose=${1:-run}
packages=(apache2 apache2-dev libcurl4-openssl-dev libjansson-dev libhiredis-dev libssl-dev
          make gcc python3 ca-certificates curl)
if [[ $purpose == package || $purpose == test ]]; then
    # build/package.sh: dpkg-buildpackage, dh (dh_apache2 is in apache2-dev), lintian
    packages+=(build-essential dpkg-dev debhelper lintian)
fi
if [[ $purpose == test ]]; then
    packages+=(python3-pytest libcmocka-dev pkg-config redis-server memcached
               python3-prometheus-client)
    packages+=(chromium)  # the browser test (tests/browser, headless)
    packages+=(clang libclang-rt-14-dev libaprutil1-dev)  # libFuzzer targets (tests/fuzz)
    # the SDK tests need node and npm; a NodeSource nodejs already bundles npm,
    # so look for the commands, not for Debian's package names
    command -v node >/dev/null || packages+=(nodejs)
    command -v npm >/dev/null || packages+=(npm)
fi

missing=()
for p in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done
if ((${#missing[@]} == 0)); then
    exit 0
fi

echo "Installing missing packages: ${missing[*]}"
sudo=()
if [[ $(id -u) != 0 ]]; then
    command -v sudo >/dev/null || { echo "run as root to install: ${missing[*]}" >&2; exit 1; }
    sudo=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
# the packages' own services (a system apache2 on port 80, redis-server,
# memcached) are not wanted: the project runs its own on free ports. A
# policy-rc.d that says "no" keeps apt from starting them, where there is
# none already.
policy=/usr/sbin/policy-rc.d
made_policy=0
if [[ ! -e $policy ]] && "${sudo[@]}" sh -c "printf '#!/bin/sh\nexit 101\n' >$policy && chmod 755 $policy"; then
    made_policy=1
fi
rc=0
"${sudo[@]}" apt-get update -qq || rc=$?
((rc == 0)) && { "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || rc=$?; }
((made_policy)) && "${sudo[@]}" rm -f "$policy"
exit "$rc"
