#!/usr/bin/env bash
# Installs what the test suite needs beyond Go and PostgreSQL, when it is missing:
#   chromium  the pages' end-to-end tests drive a real headless Chromium (internal/browsertest)
#   hledger   the hledger export is checked by hledger itself (its balance = the trial balance)
# Both are Debian packages. make test sets TANDEM_REQUIRE_BROWSER=1 and TANDEM_REQUIRE_HLEDGER=1,
# so those tests fail rather than skip when the tools are absent.
set -euo pipefail
missing=()
command -v chromium >/dev/null 2>&1 || [ -n "${TANDEM_CHROMIUM:-}" ] || missing+=(chromium)
command -v hledger >/dev/null 2>&1 || missing+=(hledger)
[ ${#missing[@]} -eq 0 ] && exit 0
echo "testdeps: installing ${missing[*]} (Debian packages) for the browser and hledger tests"
sudo=()
[ "$(id -u)" -eq 0 ] || sudo=(sudo)
"${sudo[@]}" apt-get update -q >/dev/null
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q "${missing[@]}" >/dev/null
echo "testdeps: installed $(chromium --version 2>/dev/null || true); $(hledger --version 2>/dev/null || true)"
