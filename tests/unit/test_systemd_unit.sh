# The systemd units of deploy/: `systemd-analyze verify` accepts them (with
# the executables' paths pointed at this build; a broken copy is refused, so
# the check can fail), `systemd-analyze security --offline=true` rates the
# daemon and worker units 2.0 or better, the hardening and the worker
# isolation the README promises are there, and the ExecStart command lines
# run: the daemon's flags parse and a worker started with the template's
# command line connects. Then the sd_notify protocol against a fake
# NOTIFY_SOCKET: READY=1 only once the listener answers, WATCHDOG=1 pings
# every second while the loop and the database work, STOPPING=1 on SIGTERM.
source "$(dirname "$0")/../lib.sh"
if ! command -v systemd-analyze >/dev/null; then
  bad "systemd-analyze is not installed, so the units cannot be checked: run scripts/deps.sh --test (Debian package systemd)"
  T_DONE=1
  exit 1
fi
U=$T_DIR/units
mkdir -p "$U"
cp "$FT_SRC"/deploy/finetuned.service "$FT_SRC"/deploy/finetuned-worker@.service \
  "$FT_SRC"/deploy/finetuned-workers.slice "$U/"
sed -i "s|/usr/local/bin/|$FT_BIN/|g" "$U"/*.service
out=$(systemd-analyze verify "$U/finetuned.service" "$U/finetuned-worker@1.service" \
  "$U/finetuned-workers.slice" 2>&1)
rc=$?
check_eq "systemd-analyze verify: exit 0" "$rc" 0
check_eq "systemd-analyze verify: no warnings" "$out" ""

# the check can fail: a misspelled directive and a missing executable
mkdir -p "$U/broken"
sed 's/^ProtectHome=/ProtectHomme=/; s|^ExecStart=[^ ]*|ExecStart=/nonexistent/finetuned|' \
  "$U/finetuned.service" >"$U/broken/finetuned.service"
out=$(systemd-analyze verify "$U/broken/finetuned.service" 2>&1)
rc=$?
check "verify refuses a missing executable (rc $rc)" test "$rc" != 0
check "verify reports an unknown directive" grep -q "ProtectHomme" <<<"$out"

score() { # score UNIT: the overall exposure level
  systemd-analyze security --offline=true "$1" 2>&1 | sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p'
}
s=$(score "$U/finetuned.service")
check "daemon unit exposure $s <= 2.0" awk -v s="$s" 'BEGIN{exit !(s != "" && s <= 2.0)}'
s=$(score "$U/finetuned-worker@1.service")
check "worker unit exposure $s <= 2.0" awk -v s="$s" 'BEGIN{exit !(s != "" && s <= 2.0)}'

has() { grep -qx "$2" "$U/$1"; }
for d in Type=notify WatchdogSec=30s KillMode=mixed TimeoutStopSec=60 User=finetuned \
  StateDirectory=finetuned ProtectSystem=strict ProtectHome=yes PrivateTmp=yes \
  NoNewPrivileges=yes "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6" \
  SystemCallFilter=@system-service; do
  check "daemon unit: $d" has finetuned.service "$d"
done
check "daemon unit starts no local workers" grep -q '^ExecStart=.* --workers 0' "$U/finetuned.service"
for d in Slice=finetuned-workers.slice MemoryMax=16G User=finetuned StateDirectory=finetuned \
  ProtectSystem=strict NoNewPrivileges=yes Restart=always; do
  check "worker unit: $d" has finetuned-worker@.service "$d"
done
check "the slice caps memory" grep -q '^MemoryMax=' "$U/finetuned-workers.slice"
check "sysusers makes the user" grep -q '^u finetuned ' "$FT_SRC/deploy/finetuned.sysusers"

# the ExecStart command lines work: the daemon's with a temp data dir and a
# free port, the worker template's with its socket path pointed there
exec_of() { sed -n 's/^ExecStart=//p' "$U/$1" | head -1; }
D=$T_DIR/data
mkdir -p "$D"
cmd=$(exec_of finetuned.service | sed 's/127.0.0.1:8080/127.0.0.1:0/')
$cmd --data-dir "$D" >>"$T_DIR/daemon.log" 2>&1 &
DAEMON_PID=$!
for _ in $(seq 1 200); do [ -s "$D/finetuned.port" ] && break; sleep 0.05; done
URL="http://127.0.0.1:$(cat "$D/finetuned.port" 2>/dev/null)"
code=$(curl -s -o /dev/null -w '%{http_code}' "$URL/readyz")
check_eq "the unit's daemon command line serves" "$code" 200
wcmd=$(exec_of finetuned-worker@.service | sed "s|/var/lib/finetuned|$D|; s|%H-%i|test-1|")
$wcmd >"$T_DIR/worker.log" 2>&1 &
WPID=$!
n=0
for _ in $(seq 1 100); do
  n=$(curl -s "$URL/readyz" | jq -r .workers.connected)
  [ "$n" = 1 ] && break
  sleep 0.05
done
check_eq "the template's worker command line connects" "$n" 1
kill "$WPID"; wait "$WPID" 2>/dev/null
stop_daemon

# ---- sd_notify against a fake NOTIFY_SOCKET
# (ldd's output read whole: grep -q exiting early would SIGPIPE ldd and,
# under pipefail, fail the pipeline at random)
if ! grep -q libsystemd <<<"$(ldd "$FT_BIN/finetuned")"; then
  bad "finetuned was built without libsystemd (libsystemd-dev): no sd_notify, no watchdog"
else
  rm -f "$D/finetuned.port"
  /usr/bin/python3 - "$T_DIR/notify.sock" "$T_DIR/notify.txt" "$D/finetuned.port" <<'PY' &
import os, socket, sys, time
path, out, port_file = sys.argv[1:4]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(path)
s.settimeout(20)
with open(out, "w") as f:
    while True:
        try:
            msg = s.recv(4096).decode()
        except socket.timeout:
            break
        # READY=1: was the listener already answering? (the port file is
        # written just before; the connect proves it accepts)
        extra = ""
        if "READY=1" in msg:
            try:
                port = int(open(port_file).read())
                socket.create_connection(("127.0.0.1", port), timeout=2).close()
                extra = " listener=up"
            except Exception as e:
                extra = " listener=down(%s)" % e
        f.write("%.3f %s%s\n" % (time.monotonic(), msg.replace("\n", "|"), extra))
        f.flush()
        if msg.startswith("STOPPING=1"):
            break
PY
  NPID=$!
  for _ in $(seq 1 100); do [ -S "$T_DIR/notify.sock" ] && break; sleep 0.05; done
  NOTIFY_SOCKET=$T_DIR/notify.sock WATCHDOG_USEC=3000000 "$FT_BIN/finetuned" serve \
    --data-dir "$D" --listen 127.0.0.1:0 --workers 0 >>"$T_DIR/daemon.log" 2>&1 &
  DAEMON_PID=$!
  sleep 3.5
  stop_daemon
  wait "$NPID"
  cat "$T_DIR/notify.txt"
  check "READY=1 sent once the listener accepts" grep -q '^[0-9.]* READY=1.* listener=up$' "$T_DIR/notify.txt"
  check_eq "READY=1 sent once" "$(grep -c 'READY=1' "$T_DIR/notify.txt")" 1
  n=$(grep -c ' WATCHDOG=1$' "$T_DIR/notify.txt")
  check "WATCHDOG=1 about every second ($n in 3.5 s)" test "$n" -ge 2 -a "$n" -le 5
  check "STOPPING=1 on SIGTERM, last" bash -c "tail -1 '$T_DIR/notify.txt' | grep -q STOPPING=1"
fi
T_DONE=1
