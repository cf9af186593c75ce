#!/usr/bin/env bash
# Install the system tools tests/test_deploy.py uses, when that is possible: nginx (for a real
# `nginx -t` and a routing check of deploy/nginx/). Never fails: without them those tests skip.
set -u
have_nginx() { command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]; }
if have_nginx; then
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "note: nginx not installed (needs root and apt-get: apt-get install nginx-light); the nginx tests will skip"
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
install() { apt-get install -y -q --no-install-recommends nginx-light >/dev/null 2>&1; }
if ! install; then
  # the package lists may be missing or stale (fresh containers): refresh once, then retry
  apt-get update -q >/dev/null 2>&1 && install
fi
if have_nginx; then
  echo "note: installed nginx-light for the tests of deploy/nginx/"
else
  echo "note: could not install nginx-light; the nginx tests will skip"
fi
exit 0
