#!/bin/sh
# Make the complete development PKI (see certs/README.md): ./certs/make-dev-pki.sh [OUTDIR] [--identity ID] ...
# OUTDIR defaults to certs/dev. Development only: every private key is a plain PEM file (mode 0600).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
python=${PYTHON:-"$root/.venv/bin/python"}
[ -x "$python" ] || python=python3
out="$here/dev"
case "${1:-}" in
    ""|-*) ;;
    *) out=$1; shift ;;
esac
PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}" exec "$python" -m secure_cp.security.devpki "$out" "$@"
