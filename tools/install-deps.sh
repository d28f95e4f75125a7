#!/usr/bin/env bash
# Installs the Debian packages Baton builds and tests with. Idempotent: packages
# already present are not touched, and apt-get runs only when something is missing.
set -euo pipefail
# libh2o-dev: the build of libh2o on libuv (/metrics, the HTTP API); its h2o.h includes openssl/ssl.h (libssl-dev)
# chromium: headless, for the chat page's test (tests/cluster/test_http_page.sh, driven by puppeteer-core from npm)
# libvulkan-dev, glslc: the Vulkan GPU backend (kernels/vulkan); mesa-vulkan-drivers: lavapipe, the
# CPU Vulkan device its tests run on; vulkan-tools: vulkaninfo
pkgs=(build-essential cmake pkg-config
      libvulkan-dev glslc mesa-vulkan-drivers vulkan-tools
      libuv1-dev libprotobuf-c-dev protobuf-c-compiler
      libopenmpi-dev openmpi-bin liblz4-dev
      libpcre2-dev libjansson-dev libsodium-dev libutf8proc-dev libh2o-dev libssl-dev libinih-dev
      python3 python3-numpy iproute2 nodejs npm procps chromium
      clang libclang-rt-dev valgrind
      systemd)  # systemd-analyze verify: the units in deploy/ (tests/cluster/test_deploy_install.sh)
# clang, libclang-rt-dev: the fuzz build (libFuzzer and the sanitizer runtimes of
# clang 14: tools/test.sh fuzz, tools/fuzz.sh); valgrind: memcheck of a load run
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# nodejs/npm may come from elsewhere than Debian (e.g. a preinstalled toolchain).
if command -v node >/dev/null && command -v npm >/dev/null; then
  tmp=(); for p in "${missing[@]}"; do [[ $p == nodejs || $p == npm ]] || tmp+=("$p"); done
  missing=("${tmp[@]+"${tmp[@]}"}")
fi
if ((${#missing[@]})); then
  echo "install-deps: installing ${missing[*]}"
  sudo_cmd=(); [[ $(id -u) == 0 ]] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
