#!/usr/bin/env bash
# Runs kni-gw's whole test suite on this machine: installs what is missing
# (scripts/install.sh), reserves hugepages for the hugepage tests, then
# pytest over tests/ (unit and integration; integration tests need root and
# fail, never skip, when they cannot run).
#
#   sudo scripts/test.sh [pytest arguments]
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
"$top/scripts/install.sh"
"$top/scripts/setup_hugepages.sh" 1G
exec "$top/.venv/bin/python" -m pytest -ra "$@" tests
