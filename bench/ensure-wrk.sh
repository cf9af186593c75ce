#!/usr/bin/env bash
# `make bench` loads the webhook with wrk (Debian's package `wrk`): install it when it is missing and
# that is possible (root, apt-get). Never fails by itself: bench/run.py says what to do without it.
set -u
export DEBIAN_FRONTEND=noninteractive
command -v wrk >/dev/null 2>&1 && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "note: wrk is not installed (needs root and apt-get: apt-get install wrk)"
  exit 0
fi
install() { apt-get install -y -q --no-install-recommends wrk >/dev/null 2>&1; }
if ! install; then
  # the package lists may be missing or stale (fresh containers): refresh once, then retry
  apt-get update -q >/dev/null 2>&1 && install
fi
command -v wrk >/dev/null 2>&1 && echo "note: installed wrk for the benchmarks" || echo "note: could not install wrk"
exit 0
