#!/usr/bin/env bash
# tests/test_browser.py opens the built pages in headless Chromium; install it when missing (apt, as
# root or with passwordless sudo).  Where that is impossible the browser test skips: say so loudly.
if ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null; then
  if [ "$(id -u)" = 0 ]; then apt_get=(apt-get); elif sudo -n true 2>/dev/null; then apt_get=(sudo -n apt-get); else apt_get=(); fi
  if [ ${#apt_get[@]} -gt 0 ]; then
    "${apt_get[@]}" install -y --no-install-recommends chromium \
      || { "${apt_get[@]}" update && "${apt_get[@]}" install -y --no-install-recommends chromium; } \
      || true
  fi
  if ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null; then
    echo "WARNING: chromium is not installed and cannot be (not root, no sudo, or apt failed):" \
         "tests/test_browser.py will SKIP" >&2
  fi
fi
