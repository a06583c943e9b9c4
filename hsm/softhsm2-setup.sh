#!/usr/bin/env bash
# Development / CI: a SoftHSM2 token for the PKCS#11 key backend, in its own directory.
#   bash hsm/softhsm2-setup.sh DIR [TOKEN_LABEL]
# Creates DIR/softhsm2.conf (tokens in DIR/tokens), initialises the token with a random user PIN and SO PIN,
# writes the user PIN to DIR/token.pin (mode 0600), and prints the [keys] section and the SOFTHSM2_CONF to export.
set -euo pipefail
dir=${1:?usage: bash hsm/softhsm2-setup.sh DIR [TOKEN_LABEL]}
label=${2:-secure-cp}
command -v softhsm2-util >/dev/null || { echo "softhsm2-util not found: apt-get install softhsm2" >&2; exit 1; }
umask 077
mkdir -p "$dir/tokens"
dir=$(cd "$dir" && pwd)
conf="$dir/softhsm2.conf"
printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = INFO\nslots.removable = false\n' \
  "$dir/tokens" > "$conf"
export SOFTHSM2_CONF="$conf"
pin=$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
so_pin=$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
softhsm2-util --init-token --free --label "$label" --pin "$pin" --so-pin "$so_pin" >/dev/null
printf '%s\n' "$pin" > "$dir/token.pin"
printf '%s\n' "$so_pin" > "$dir/token.so-pin"
module=""
for m in /usr/lib/softhsm/libsofthsm2.so /usr/lib/*-linux-gnu/softhsm/libsofthsm2.so; do
  if [ -e "$m" ]; then module=$m; break; fi
done
cat <<EOT
export SOFTHSM2_CONF=$conf     # the station's environment (systemd: Environment=SOFTHSM2_CONF=...)

[keys]
backend = "pkcs11"
module = "$module"
token = "$label"
pin_file = "$dir/token.pin"
EOT
