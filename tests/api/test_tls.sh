# Transport security: HTTPS with --tls-cert/--tls-key (and the same from the
# config file) through libmicrohttpd's GnuTLS support, checked with a
# self-signed certificate: curl --cacert works, plain HTTP to the TLS port
# and an unverified client fail, and bad TLS options stop the daemon with a
# message. Then the worker port: a TCP worker with a wrong or missing token
# is refused (logged and counted in /metrics), the right token connects.
source "$(dirname "$0")/../lib.sh"
if ! command -v openssl >/dev/null; then
  bad "openssl is not installed: run scripts/deps.sh --test (Debian package openssl)"
  T_DONE=1
  exit 1
fi
D=$T_DIR/data
mkdir -p "$D"
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$T_DIR/key.pem" -out "$T_DIR/cert.pem" \
  -days 2 -subj /CN=localhost -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" 2>/dev/null
check "self-signed certificate made" test -s "$T_DIR/cert.pem"

# start_tls [serve flags]: the daemon on a free port; sets PORT (0 when it exited)
start_tls() {
  rm -f "$D/finetuned.port"
  "$FT_BIN/finetuned" serve --data-dir "$D" --listen 127.0.0.1:0 --workers 0 "$@" \
    >>"$T_DIR/daemon.log" 2>&1 &
  DAEMON_PID=$!
  PORT=0
  for _ in $(seq 1 200); do
    [ -s "$D/finetuned.port" ] && { PORT=$(cat "$D/finetuned.port"); return 0; }
    kill -0 "$DAEMON_PID" 2>/dev/null || { wait "$DAEMON_PID"; DAEMON_RC=$?; DAEMON_PID=""; return 1; }
    sleep 0.05
  done
  return 1
}

start_tls --tls-cert "$T_DIR/cert.pem" --tls-key "$T_DIR/key.pem"
check "daemon starts with TLS" test "$PORT" != 0
code=$(curl -s -o "$T_DIR/out" -w '%{http_code}' --cacert "$T_DIR/cert.pem" "https://127.0.0.1:$PORT/healthz")
check_eq "HTTPS with --cacert: 200" "$code" 200
check_eq "HTTPS body" "$(jq -r .status "$T_DIR/out")" ok
code=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$T_DIR/cert.pem" "https://localhost:$PORT/v1/files")
check_eq "HTTPS API call by host name" "$code" 200
check "plain HTTP to the TLS port fails" bash -c \
  "code=\$(curl -s -m 5 -o /dev/null -w '%{http_code}' http://127.0.0.1:$PORT/healthz); [ \"\$code\" != 200 ]"
check "HTTPS without trusting the certificate fails" bash -c \
  "! curl -sf -m 5 -o /dev/null https://127.0.0.1:$PORT/healthz"
check "the log says https" grep -q "listening on https://127.0.0.1:$PORT" "$T_DIR/daemon.log"
stop_daemon

# the same from the config file
printf 'workers = 0\ntls_cert = %s\ntls-key = "%s"\n' "$T_DIR/cert.pem" "$T_DIR/key.pem" >"$T_DIR/ft.conf"
start_tls --config "$T_DIR/ft.conf"
code=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$T_DIR/cert.pem" "https://127.0.0.1:$PORT/readyz")
check_eq "TLS from the config file" "$code" 200
stop_daemon

# bad TLS options: the daemon refuses to start and says why
start_tls --tls-cert "$T_DIR/cert.pem"
check_eq "cert without key: exit 1" "${DAEMON_RC:-}" 1
check "cert without key: message" grep -q "tls-cert and --tls-key go together" "$T_DIR/daemon.log"
echo "not a key" >"$T_DIR/bad.pem"
DAEMON_RC=""
start_tls --tls-cert "$T_DIR/cert.pem" --tls-key "$T_DIR/bad.pem"
check_eq "a key that is not PEM: exit 1" "${DAEMON_RC:-}" 1
check "a key that is not PEM: message names the file" grep -q "TLS key $T_DIR/bad.pem is not a PEM file" \
  "$T_DIR/daemon.log"
DAEMON_RC=""
start_tls --tls-cert "$T_DIR/missing.pem" --tls-key "$T_DIR/key.pem"
check_eq "a missing certificate: exit 1" "${DAEMON_RC:-}" 1
stop_daemon

# ---- the worker port: the token is required
WPORT=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
start_tls --worker-listen "127.0.0.1:$WPORT" --worker-token s3cret-token
URL="http://127.0.0.1:$PORT"
metric() { curl -s "$URL/metrics" | awk -v k="$1" '$1 == k {print $2}'; }
before=$(metric 'finetuned_rejected_requests_total{reason="worker_auth"}')
timeout 20 "$FT_BIN/finetuned-worker" --connect "tcp:127.0.0.1:$WPORT" --token wrong-token \
  >"$T_DIR/w1.log" 2>&1
rc=$?
check "a wrong token: the worker exits with an error (rc $rc)" test "$rc" != 0 -a "$rc" != 124
check "a wrong token: the worker is told why" grep -qi "token" "$T_DIR/w1.log"
FINETUNED_WORKER_TOKEN= timeout 20 "$FT_BIN/finetuned-worker" --connect "tcp:127.0.0.1:$WPORT" \
  >"$T_DIR/w2.log" 2>&1
rc=$?
check "no token: refused (rc $rc)" test "$rc" != 0 -a "$rc" != 124
check "the daemon logs the refusal" grep -q 'worker refused: bad token' "$T_DIR/daemon.log"
after=$(metric 'finetuned_rejected_requests_total{reason="worker_auth"}')
check_eq "refusals counted in /metrics" "$((after - before))" 2
check_eq "no worker connected" "$(metric finetuned_workers_connected)" 0
"$FT_BIN/finetuned-worker" --connect "tcp:127.0.0.1:$WPORT" --token s3cret-token >"$T_DIR/w3.log" 2>&1 &
WPID=$!
n=0
for _ in $(seq 1 100); do n=$(metric finetuned_workers_connected); [ "$n" = 1 ] && break; sleep 0.05; done
check_eq "the right token connects" "$n" 1
kill "$WPID" 2>/dev/null; wait "$WPID" 2>/dev/null
T_DONE=1
