#!/usr/bin/env bash
# Installs Debian's headless Chromium for the HTML-report browser test, where we can (root with apt).
# Anywhere else the browser test is skipped with a reason, so this never fails the build.
set -u
command -v chromium >/dev/null 2>&1 && exit 0
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
    || echo "ensure-chromium: could not install chromium; the browser test will be skipped" >&2
else
  echo "ensure-chromium: not root or no apt-get; the browser test will be skipped" >&2
fi
exit 0
