#!/usr/bin/env bash
# Development / CI: a software TPM 2.0 (swtpm) with a tpm2-pkcs11 token, for the PKCS#11 key backend.
#   bash hsm/swtpm-setup.sh DIR [TOKEN_LABEL]        -> start, initialise (once), print the settings
#   bash hsm/swtpm-setup.sh DIR --stop               -> stop the daemons started for DIR
# DIR holds everything: the TPM state (DIR/state), the tpm2-pkcs11 store (DIR/store), a private D-Bus session bus
# (DIR/dbus.sock) and the PID files. tpm2-abrmd is the resource manager between the clients and swtpm: without one,
# objects that tpm2_ptool and tpm2-pkcs11 leave loaded exhaust the TPM's 3 object slots within a few commands (real
# targets use the kernel's /dev/tpmrm0 instead). It runs on its own session bus, so no system D-Bus policy is needed.
# The user PIN goes to DIR/token.pin (mode 0600). The script prints the environment (TPM2_PKCS11_TCTI,
# TPM2_PKCS11_STORE, DBUS_SESSION_BUS_ADDRESS) and the [keys] section.
set -euo pipefail
dir=${1:?usage: bash hsm/swtpm-setup.sh DIR [TOKEN_LABEL | --stop]}
label=${2:-secure-cp}
umask 077
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)

# every failure says where it happened (the daemons' own messages go to their log files in DIR)
trap 'echo "swtpm-setup.sh: failed at line $LINENO: $BASH_COMMAND" >&2; tail -n 5 "$dir"/swtpm.log "$dir"/abrmd.log 2>/dev/null >&2 || true' ERR

stop_all() {
  for name in abrmd dbus swtpm; do
    if [ -s "$dir/$name.pid" ]; then kill "$(cat "$dir/$name.pid")" 2>/dev/null || true; rm -f "$dir/$name.pid"; fi
  done
}
if [ "$label" = "--stop" ]; then stop_all; exit 0; fi

for tool in swtpm tpm2-abrmd tpm2_ptool dbus-daemon; do
  command -v "$tool" >/dev/null || { echo "$tool not found: bash .ci/bootstrap installs swtpm, tpm2-abrmd, libtpm2-pkcs11-tools" >&2; exit 1; }
done
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
alive() { [ -s "$dir/$1.pid" ] && kill -0 "$(cat "$dir/$1.pid")" 2>/dev/null; }

mkdir -p "$dir/state" "$dir/store"
if ! alive swtpm; then
  # the swtpm TCTI finds the control channel at port + 1, which may be taken even when port is free (or either
  # may be taken by someone else between the probe and the bind): try a few pairs
  started=""
  for _ in 1 2 3 4 5 6 7 8; do
    port=$(free_port); ctrl=$((port + 1))
    if swtpm socket --tpm2 --tpmstate "dir=$dir/state" --flags not-need-init,startup-clear \
         --server "type=tcp,port=$port,bindaddr=127.0.0.1" --ctrl "type=tcp,port=$ctrl,bindaddr=127.0.0.1" \
         --daemon --pid "file=$dir/swtpm.pid" --log "file=$dir/swtpm.log"; then started=1; break; fi
  done
  [ -n "$started" ] || { echo "swtpm did not start (ports in use?)" >&2; false; }
  echo "$port" > "$dir/swtpm.port"
fi
port=$(cat "$dir/swtpm.port")
if ! alive dbus; then
  rm -f "$dir/dbus.sock"
  dbus-daemon --session --fork --nopidfile --address="unix:path=$dir/dbus.sock" --print-pid=3 3>"$dir/dbus.pid"
fi
export DBUS_SESSION_BUS_ADDRESS="unix:path=$dir/dbus.sock"
if ! alive abrmd; then
  root=(); [ "$(id -u)" = 0 ] && root=(--allow-root)
  tpm2-abrmd --session "${root[@]}" --flush-all --tcti="swtpm:host=127.0.0.1,port=$port" >"$dir/abrmd.log" 2>&1 &
  echo $! > "$dir/abrmd.pid"
  ready=""
  for _ in $(seq 300); do   # ready when it owns its bus name (a loaded CI machine may take seconds)
    if dbus-send --session --print-reply --dest=org.freedesktop.DBus / org.freedesktop.DBus.NameHasOwner \
         string:com.intel.tss2.Tabrmd 2>/dev/null | grep -q "boolean true"; then ready=1; break; fi
    alive abrmd || break
    sleep 0.1
  done
  [ -n "$ready" ] || { echo "tpm2-abrmd did not come up" >&2; false; }
fi
export TPM2_PKCS11_TCTI="tabrmd:bus_type=session" TPM2TOOLS_TCTI="tabrmd:bus_type=session" TPM2_PKCS11_STORE="$dir/store"

if [ ! -s "$dir/token.pin" ]; then
  pin=$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
  so_pin=$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
  tpm2_ptool init --path "$dir/store" >/dev/null
  tpm2_ptool addtoken --pid=1 --label="$label" --userpin="$pin" --sopin="$so_pin" --path "$dir/store" >/dev/null
  printf '%s\n' "$so_pin" > "$dir/token.so-pin"
  printf '%s\n' "$pin" > "$dir/token.pin"
fi
module=""
for m in /usr/lib/*-linux-gnu/pkcs11/libtpm2_pkcs11.so /usr/lib/pkcs11/libtpm2_pkcs11.so; do
  if [ -e "$m" ]; then module=$m; break; fi
done
cat <<EOT
export TPM2_PKCS11_TCTI="$TPM2_PKCS11_TCTI" TPM2_PKCS11_STORE="$dir/store" DBUS_SESSION_BUS_ADDRESS="$DBUS_SESSION_BUS_ADDRESS"

[keys]
backend = "pkcs11"
module = "$module"
token = "$label"
pin_file = "$dir/token.pin"
EOT
