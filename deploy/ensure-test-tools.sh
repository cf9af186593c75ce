#!/usr/bin/env bash
# Install the system tools some tests use, when that is possible. Never fails: without them those
# tests skip.
#   nginx-light                     tests/system/test_deploy.py: a real `nginx -t` and a routing check of deploy/nginx/
#   chromium + fonts-wqy-microhei   tests/system/test_page_browser.py: the answer page in a real headless
#                                   browser, with a CJK font so that Chinese text renders (and screenshots read)
set -u
export DEBIAN_FRONTEND=noninteractive

have_nginx() { command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]; }
have_chromium() { command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ]; }
have_cjk_font() { [ -e /usr/share/fonts/truetype/wqy/wqy-microhei.ttc ] || fc-list :lang=zh 2>/dev/null | grep -q .; }

wanted=()
have_nginx || wanted+=(nginx-light)
have_chromium || wanted+=(chromium)
have_cjk_font || wanted+=(fonts-wqy-microhei)
if [ "${#wanted[@]}" = 0 ]; then
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "note: ${wanted[*]} not installed (needs root and apt-get: apt-get install ${wanted[*]}); the tests that use them will skip"
  exit 0
fi
install() { apt-get install -y -q --no-install-recommends "$@" >/dev/null 2>&1; }
if ! install "${wanted[@]}"; then
  # the package lists may be missing or stale (fresh containers): refresh once, then retry
  apt-get update -q >/dev/null 2>&1 && install "${wanted[@]}"
fi
for package in "${wanted[@]}"; do
  if dpkg -s "$package" >/dev/null 2>&1; then
    echo "note: installed $package for the tests"
  else
    echo "note: could not install $package; the tests that use it will skip"
  fi
done
exit 0
