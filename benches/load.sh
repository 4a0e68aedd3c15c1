#!/usr/bin/env bash
# HTTP load benchmark of the gateway against an nginx mutual-TLS baseline, with oha as the
# client, on SQLite and on a throwaway PostgreSQL cluster. Run `benches/load.sh --help`.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: benches/load.sh [--help]

Load benchmark of a release build of the gateway, with the demo data, over mutual TLS and
HTTP/1.1 keep-alive, driven by oha. Every figure is set against an nginx mutual-TLS baseline
serving an 11-byte JSON file, measured in the same rounds, on the same machine.

What it does:
  1. installs what is missing: oha (`cargo install oha --locked`), nginx and the PostgreSQL
     server (apt-get, as root or through sudo);
  2. builds the gateway (`cargo build --release --locked`), writes dev material with `init`
     into a temporary directory and mints dev tokens;
  3. starts nginx (its own configuration, pid, logs and temp paths in the temporary directory)
     and, for each backend, a gateway seeded with the demo data on a free loopback port;
  4. per backend, checks with curl that every gateway scenario answers 200, then runs the
     scenarios interleaved in rounds (round 1 runs each scenario once, then round 2, ...):
       nginx            GET /ok.json from nginx (static file, client certificate)
       healthz          GET /healthz (client certificate only)
       disclosure       clinician county-mh/clin-7 reads crisis-incident INC-2026-0042
                        (Purpose-Of-Use: treatment)
       referral-status  officer metro-pd/officer-17 reads referral REF-DEMO-1
                        (Purpose-Of-Use: referral-followup)
       subject-lookup   officer reads the safety plans of metro-pd/P-2231
                        (Purpose-Of-Use: crisis-response)
     then one more disclosure run limited to half of its best measured rate (oha -q), for
     its p99 at half load;
  5. prints one markdown table (median req/s over the rounds and its range, p50 and p99,
     non-2xx answers, cores the server used, ratio to the nginx median of the same backend
     run), the gateway's peak RSS per backend and the half-rate p99.

With LOAD_SCALE_OUT=1 it then runs a scale-out set on one PostgreSQL cluster (fsync on):
three gateways on one configuration (the first seeds the demo data), HAProxy in front of them
(mode tcp, TLS passed through, health checks on /healthz with a partner certificate, as in
the README's "Running in production"), and the disclosure scenario, interleaved in rounds:
       scale-1          straight to one gateway
       scale-1-haproxy  through HAProxy to that one gateway only (the proxy's own cost)
       scale-3-haproxy  through HAProxy to the three gateways (round robin)
and prints a second table with the ratio of each to scale-1 and the CPU of the gateways,
HAProxy and PostgreSQL. LOAD_SCALE_OUT=only runs the scale-out set alone. The serialization
rate of the log's head lock itself is measured by `cargo bench --bench head_lock`.

Everything it starts (nginx, gateways, HAProxy, the PostgreSQL cluster) is stopped and the
temporary directory removed on exit. The raw oha JSON, the table and the server logs are kept in
target/load/<date>-<commit>/ (target/load/latest.md is the last table).

Environment:
  LOAD_DURATION     oha run length per scenario and round (default 10s; oha syntax: 5s, 1m)
  LOAD_ROUNDS       number of interleaved rounds (default 3)
  LOAD_CONNECTIONS  concurrent keep-alive connections (default 32)
  LOAD_BACKENDS     backends to run, space or comma separated (default "sqlite postgres")
  LOAD_SCALE_OUT    1: also run the scale-out set (one gateway vs three behind HAProxy, on
                    PostgreSQL); only: run just that set (default 0)
  PG_BIN            directory holding initdb and pg_ctl (default: newest
                    /usr/lib/postgresql/*/bin)
  CARGO             cargo binary (default: cargo)
  CARGO_TARGET_DIR  where the release build goes (default: target/ in the repository)

Needs: a Debian-like system (apt-get) for the installs, cargo, python3, curl, git. Run from
anywhere inside the repository; initdb runs as the `postgres` user when started as root.
Client and servers share the machine's cores: note the load average printed in the header.
EOF
}

case "${1:-}" in
    -h | --help) usage; exit 0 ;;
    "") ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
esac

DURATION=${LOAD_DURATION:-10s}
ROUNDS=${LOAD_ROUNDS:-3}
CONNECTIONS=${LOAD_CONNECTIONS:-32}
BACKENDS=$(echo "${LOAD_BACKENDS:-sqlite postgres}" | tr ',' ' ')
CARGO=${CARGO:-cargo}
SCENARIOS=(nginx healthz disclosure referral-status subject-lookup)
SCALE_OUT=${LOAD_SCALE_OUT:-0}
SCALE_SCENARIOS=(scale-1 scale-1-haproxy scale-3-haproxy)

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "LOAD_ROUNDS must be a positive integer, not '$ROUNDS'"
[[ $CONNECTIONS =~ ^[1-9][0-9]*$ ]] || die "LOAD_CONNECTIONS must be a positive integer, not '$CONNECTIONS'"
for b in $BACKENDS; do
    [[ $b == sqlite || $b == postgres ]] || die "LOAD_BACKENDS: unknown backend '$b' (sqlite, postgres)"
done
[[ -n $BACKENDS ]] || die "LOAD_BACKENDS is empty"
[[ $SCALE_OUT == 0 || $SCALE_OUT == 1 || $SCALE_OUT == only ]] ||
    die "LOAD_SCALE_OUT must be 0, 1 or only, not '$SCALE_OUT'"

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
[[ -f Cargo.toml && -d policies ]] || die "$ROOT does not look like the repository root"

command -v python3 >/dev/null || die "python3 is required"
command -v "$CARGO" >/dev/null || die "cargo is required (https://rustup.rs)"

# ---------------------------------------------------------------------------------------
# 1. Installs
# ---------------------------------------------------------------------------------------

as_root() {
    if [[ $EUID -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null; then
        sudo "$@"
    else
        die "installing needs root or sudo: $*"
    fi
}

APT_UPDATED=0
apt_install() {
    command -v apt-get >/dev/null || die "missing $*, and no apt-get to install it with"
    if [[ $APT_UPDATED -eq 0 ]]; then
        log "apt-get update"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
        APT_UPDATED=1
    fi
    log "apt-get install $*"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >&2
}

find_pg_bin() {
    if [[ -n ${PG_BIN:-} ]]; then
        echo "$PG_BIN"
        return
    fi
    local d
    d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    echo "$d"
}

command -v curl >/dev/null || apt_install curl ca-certificates
command -v git >/dev/null || apt_install git

NGINX=$(command -v nginx || true)
[[ -z $NGINX && -x /usr/sbin/nginx ]] && NGINX=/usr/sbin/nginx
if [[ -z $NGINX ]]; then
    apt_install nginx
    NGINX=$(command -v nginx || echo /usr/sbin/nginx)
fi
[[ -x $NGINX ]] || die "nginx was not found after installing it"

PG_BIN_DIR=
if [[ $BACKENDS == *postgres* || $SCALE_OUT != 0 ]]; then
    PG_BIN_DIR=$(find_pg_bin)
    if [[ -z $PG_BIN_DIR || ! -x $PG_BIN_DIR/initdb ]]; then
        [[ -n ${PG_BIN:-} ]] && die "PG_BIN=$PG_BIN holds no initdb"
        apt_install postgresql
        PG_BIN_DIR=$(find_pg_bin)
    fi
    [[ -x $PG_BIN_DIR/initdb && -x $PG_BIN_DIR/pg_ctl ]] || die "no initdb/pg_ctl in '$PG_BIN_DIR'"
fi

HAPROXY=
if [[ $SCALE_OUT != 0 ]]; then
    HAPROXY=$(command -v haproxy || true)
    [[ -z $HAPROXY && -x /usr/sbin/haproxy ]] && HAPROXY=/usr/sbin/haproxy
    if [[ -z $HAPROXY ]]; then
        apt_install haproxy
        HAPROXY=$(command -v haproxy || echo /usr/sbin/haproxy)
    fi
    [[ -x $HAPROXY ]] || die "haproxy was not found after installing it"
fi

if ! command -v oha >/dev/null; then
    log "cargo install oha --locked (a few minutes)"
    "$CARGO" install oha --locked >&2
    CARGO_BIN=${CARGO_HOME:-$HOME/.cargo}/bin
    [[ -x $CARGO_BIN/oha ]] && PATH=$CARGO_BIN:$PATH
    command -v oha >/dev/null || die "oha was installed but is not on PATH"
fi
OHA_HELP=$(oha --help)
if grep -q -- '--output-format' <<<"$OHA_HELP"; then
    OHA_JSON=(--output-format json)
elif grep -q -- '--json' <<<"$OHA_HELP"; then
    OHA_JSON=(--json)
else
    die "this oha ($(oha --version)) has no JSON output; install a newer one"
fi
OHA_COMMON=(--no-tui "${OHA_JSON[@]}")
grep -q -- '--http-version' <<<"$OHA_HELP" && OHA_COMMON+=(--http-version 1.1)
# Requests in flight at the deadline complete instead of being counted as errors.
grep -q -- '--wait-ongoing-requests-after-deadline' <<<"$OHA_HELP" &&
    OHA_COMMON+=(--wait-ongoing-requests-after-deadline)

# ---------------------------------------------------------------------------------------
# 2. Build, work directory, clean-up
# ---------------------------------------------------------------------------------------

log "cargo build --release --locked"
"$CARGO" build --release --locked >&2
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/coresponse-gateway
[[ -x $BIN ]] || die "$BIN was not built"

COMMIT=$(git rev-parse --short HEAD)
git diff --quiet HEAD -- 2>/dev/null || COMMIT="$COMMIT (with local changes)"
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=$ROOT/target/load/$STAMP-$(git rev-parse --short HEAD)
mkdir -p "$OUT"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/gateway-load.XXXXXX")
# The PostgreSQL server (user postgres) and nginx workers must reach their subdirectories.
chmod 711 "$WORK"

GW_PID=
NGINX_PID=
PG_DATA=
PG_AS=()
SCALE_PIDS=()
HAPROXY_PID=

stop_pid() { # pid signal: signal, then wait up to 10 s, then SIGKILL
    local pid=$1 sig=$2 i
    kill -0 "$pid" 2>/dev/null || return 0
    kill "-$sig" "$pid" 2>/dev/null || true
    for i in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

stop_gateway() {
    if [[ -n $GW_PID ]]; then
        stop_pid "$GW_PID" TERM
        GW_PID=
    fi
}

stop_scale_out() {
    local pid
    if [[ -n $HAPROXY_PID ]]; then
        stop_pid "$HAPROXY_PID" TERM
        HAPROXY_PID=
    fi
    for pid in ${SCALE_PIDS[@]+"${SCALE_PIDS[@]}"}; do
        stop_pid "$pid" TERM
    done
    SCALE_PIDS=()
}

stop_postgres() {
    if [[ -n $PG_DATA ]]; then
        ${PG_AS[@]+"${PG_AS[@]}"} "$PG_BIN_DIR/pg_ctl" -D "$PG_DATA" -m fast -w stop >/dev/null 2>&1 || true
        PG_DATA=
    fi
}

cleanup() {
    local rc=$?
    set +e
    stop_gateway
    stop_scale_out
    if [[ -n $NGINX_PID ]]; then
        stop_pid "$NGINX_PID" QUIT
        NGINX_PID=
    fi
    stop_postgres
    # Keep the server logs next to the results.
    mkdir -p "$OUT/logs"
    for f in "$WORK"/*.log "$WORK"/nginx/error.log "$WORK"/pg/postgres.log "$WORK"/haproxy/haproxy.log; do
        [[ -f $f ]] && cp "$f" "$OUT/logs/" 2>/dev/null
    done
    rm -rf "$WORK"
    [[ $rc -ne 0 ]] && echo "failed (exit $rc); logs in $OUT/logs" >&2
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Seconds in an oha duration such as 10s, 1m, 500ms, 1h (exits with a message when unreadable).
duration_secs() {
    python3 - "$1" <<'EOF'
import re, sys
m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)?", sys.argv[1].strip())
if not m:
    sys.exit(f"cannot read the duration {sys.argv[1]!r} (examples: 10s, 1m)")
print(float(m.group(1)) * {"ms": 0.001, "s": 1, None: 1, "m": 60, "h": 3600}[m.group(2)])
EOF
}
duration_secs "$DURATION" >/dev/null # refuse an unreadable LOAD_DURATION early

# ---------------------------------------------------------------------------------------
# Dev material and tokens
# ---------------------------------------------------------------------------------------

DEV=$WORK/dev
log "dev material in a temporary directory"
"$BIN" init --dir "$DEV" --policies "$ROOT/policies" --listen 127.0.0.1:0 >/dev/null
CONFIG=$DEV/gateway.toml

# The longest lifetime the gateway accepts by default (identity.max_token_lifetime_secs):
# a full run of both backends takes well under an hour.
TTL=3600
token() { "$BIN" token --config "$CONFIG" --partner "$1" --user "$2" --role "$3" --ttl-secs "$TTL"; }
TOK_CLIN=$(token county-mh clin-7 clinician)
TOK_OFFICER=$(token metro-pd officer-17 officer)

tls_args() { # partner
    echo --cacert "$DEV/ca.pem" --cert "$DEV/$1.pem" --key "$DEV/$1-key.pem"
}

# ---------------------------------------------------------------------------------------
# 3. nginx baseline
# ---------------------------------------------------------------------------------------

NGX=$WORK/nginx
mkdir -p "$NGX/www" "$NGX/temp"
chmod 755 "$NGX" "$NGX/www"
printf '{"ok":true}' >"$NGX/www/ok.json"
chmod 644 "$NGX/www/ok.json"
NGINX_PORT=$(free_port)
cat >"$NGX/nginx.conf" <<EOF
worker_processes auto;
daemon off;
pid $NGX/nginx.pid;
error_log $NGX/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $NGX/temp/body;
    proxy_temp_path $NGX/temp/proxy;
    fastcgi_temp_path $NGX/temp/fastcgi;
    uwsgi_temp_path $NGX/temp/uwsgi;
    scgi_temp_path $NGX/temp/scgi;
    sendfile on;
    tcp_nodelay on;
    keepalive_timeout 65s;
    keepalive_requests 1000000;
    types { }
    default_type application/json;
    server {
        listen 127.0.0.1:$NGINX_PORT ssl;
        ssl_certificate $DEV/server.pem;
        ssl_certificate_key $DEV/server-key.pem;
        ssl_client_certificate $DEV/ca.pem;
        ssl_verify_client on;
        ssl_protocols TLSv1.2 TLSv1.3;
        root $NGX/www;
        location / { }
    }
}
EOF
log "nginx on 127.0.0.1:$NGINX_PORT"
"$NGINX" -p "$NGX" -e "$NGX/error.log" -c "$NGX/nginx.conf" -t >/dev/null 2>"$NGX/configtest.log" ||
    { cat "$NGX/configtest.log" >&2; die "nginx refused its configuration"; }
"$NGINX" -p "$NGX" -e "$NGX/error.log" -c "$NGX/nginx.conf" >"$WORK/nginx-stdout.log" 2>&1 &
NGINX_PID=$!

# url partner [curl args...] -> body on stdout, fails unless 200
expect_200() {
    local url=$1 partner=$2 code
    shift 2
    # shellcheck disable=SC2046
    code=$(curl -sS -o "$WORK/check.body" -w '%{http_code}' $(tls_args "$partner") "$@" "$url") || code=000
    if [[ $code != 200 ]]; then
        echo "GET $url answered $code:" >&2
        cat "$WORK/check.body" >&2 2>/dev/null || true
        echo >&2
        return 1
    fi
}

wait_ready() { # pid url partner what logfile
    local pid=$1 url=$2 partner=$3 what=$4 logfile=$5 i
    for i in $(seq 600); do
        # shellcheck disable=SC2046
        if curl -sf -o /dev/null $(tls_args "$partner") "$url" 2>/dev/null; then
            return 0
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 40 "$logfile" >&2 || true
            die "$what exited before answering"
        fi
        sleep 0.1
    done
    tail -n 40 "$logfile" >&2 || true
    die "$what did not answer $url within 60 s"
}

NGINX_URL=https://127.0.0.1:$NGINX_PORT/ok.json
wait_ready "$NGINX_PID" "$NGINX_URL" county-mh nginx "$NGX/error.log"
expect_200 "$NGINX_URL" county-mh || die "nginx baseline check failed"
[[ $(cat "$WORK/check.body") == '{"ok":true}' ]] || die "nginx served an unexpected body"

# ---------------------------------------------------------------------------------------
# 4. Scenarios
# ---------------------------------------------------------------------------------------

GW_PORT=
scenario_url() {
    case $1 in
        nginx) echo "$NGINX_URL" ;;
        healthz) echo "https://127.0.0.1:$GW_PORT/healthz" ;;
        disclosure) echo "https://127.0.0.1:$GW_PORT/v1/records/crisis-incident/INC-2026-0042" ;;
        referral-status) echo "https://127.0.0.1:$GW_PORT/v1/referrals/REF-DEMO-1" ;;
        subject-lookup) echo "https://127.0.0.1:$GW_PORT/v1/subjects/metro-pd/P-2231/records?kind=safety-plan" ;;
    esac
}
scenario_partner() {
    case $1 in
        nginx | healthz | disclosure) echo county-mh ;;
        referral-status | subject-lookup) echo metro-pd ;;
    esac
}
# Fills the array HDRS with the scenario's -H arguments.
scenario_headers() {
    HDRS=()
    case $1 in
        disclosure) HDRS=(-H "Authorization: Bearer $TOK_CLIN" -H "Purpose-Of-Use: treatment") ;;
        referral-status) HDRS=(-H "Authorization: Bearer $TOK_OFFICER" -H "Purpose-Of-Use: referral-followup") ;;
        subject-lookup) HDRS=(-H "Authorization: Bearer $TOK_OFFICER" -H "Purpose-Of-Use: crisis-response") ;;
    esac
}

CLK_TCK=$(getconf CLK_TCK)
cpu_ticks() { # pid [include children listed in /proc]: utime+stime of the process and its children
    local pid=$1 total=0 p f
    for p in "$pid" $(cat /proc/"$pid"/task/*/children 2>/dev/null); do
        f=$(cat /proc/"$p"/stat 2>/dev/null) || continue
        f=${f##*) } # the fields after the command name
        set -- $f
        total=$((total + ${12} + ${13})) # fields 14 and 15 of /proc/PID/stat
    done
    echo "$total"
}

RUNS=$OUT/runs.tsv
printf 'backend\tscenario\tround\tfile\tcpu_ticks\tdb_cpu_ticks\tload1\n' >"$RUNS"

# backend scenario label [extra oha args...]
run_oha() {
    local backend=$1 scenario=$2 label=$3 url partner file server before after db db_before db_after
    shift 3
    url=$(scenario_url "$scenario")
    partner=$(scenario_partner "$scenario")
    scenario_headers "$scenario"
    file=$backend-$scenario-$label.json
    if [[ $scenario == nginx ]]; then server=$NGINX_PID; else server=$GW_PID; fi
    db=
    if [[ $scenario != nginx && -n $PG_DATA ]]; then
        db=$(head -n 1 "$PG_DATA/postmaster.pid")
        db_before=$(cpu_ticks "$db")
    fi
    before=$(cpu_ticks "$server")
    # shellcheck disable=SC2046
    oha -z "$DURATION" -c "$CONNECTIONS" "${OHA_COMMON[@]}" $(tls_args "$partner") \
        ${HDRS[@]+"${HDRS[@]}"} "$@" "$url" >"$OUT/$file" 2>"$WORK/oha.err" ||
        { cat "$WORK/oha.err" >&2; die "oha failed on $scenario"; }
    after=$(cpu_ticks "$server")
    if [[ -n $db ]]; then
        db_after=$(cpu_ticks "$db")
        db=$((db_after - db_before))
    fi
    # The 1-minute load average at the end of the run: this run's own client and server make
    # about 2 of it; more means other work shared the cores.
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$backend" "$scenario" "$label" "$file" \
        "$((after - before))" "$db" "$(cut -d ' ' -f 1 /proc/loadavg)" >>"$RUNS"
    python3 - "$OUT/$file" "$backend" "$scenario" "$label" <<'EOF' >&2
import json, sys
d = json.load(open(sys.argv[1]))
s, p = d["summary"], d["latencyPercentiles"]
codes = d.get("statusCodeDistribution", {})
non2xx = sum(n for c, n in codes.items() if not str(c).startswith("2"))
print(f"    {sys.argv[2]:8} {sys.argv[3]:16} {sys.argv[4]:6} {s['requestsPerSec']:10.1f} req/s"
      f"  p50 {(p.get('p50') or 0) * 1000:7.2f} ms  p99 {(p.get('p99') or 0) * 1000:7.2f} ms"
      f"  non-2xx {non2xx}")
EOF
}

PEAK_RSS=$OUT/peak-rss.tsv
: >"$PEAK_RSS"

start_gateway() { # backend storage-url
    local backend=$1 url=$2
    GW_PORT=$(free_port)
    log "gateway ($backend) on 127.0.0.1:$GW_PORT"
    # `demo` reuses the material written by `init` and seeds the demo data into the empty
    # database; the listen address and the database come from the environment.
    GATEWAY__SERVER__LISTEN=127.0.0.1:$GW_PORT GATEWAY__STORAGE__URL=$url \
        "$BIN" demo --dir "$DEV" --policies "$ROOT/policies" >"$WORK/gateway-$backend.log" 2>&1 &
    GW_PID=$!
    wait_ready "$GW_PID" "https://127.0.0.1:$GW_PORT/healthz" county-mh "gateway ($backend)" \
        "$WORK/gateway-$backend.log"
}

start_postgres() {
    local port
    port=$(free_port)
    mkdir -p "$WORK/pg"
    if [[ $EUID -eq 0 ]]; then
        # initdb refuses to run as root.
        id postgres >/dev/null 2>&1 || die "running as root needs a 'postgres' user for initdb"
        chown postgres: "$WORK/pg"
        PG_AS=(runuser -u postgres --)
    fi
    log "PostgreSQL cluster ($PG_BIN_DIR) on 127.0.0.1:$port"
    ${PG_AS[@]+"${PG_AS[@]}"} "$PG_BIN_DIR/initdb" -D "$WORK/pg/data" -U postgres -A trust -E UTF8 \
        --no-sync >"$WORK/pg/initdb.log" 2>&1 || { cat "$WORK/pg/initdb.log" >&2; die "initdb failed"; }
    PG_DATA=$WORK/pg/data
    ${PG_AS[@]+"${PG_AS[@]}"} "$PG_BIN_DIR/pg_ctl" -D "$PG_DATA" -l "$WORK/pg/postgres.log" -w \
        -o "-p $port -k $WORK/pg -c listen_addresses=127.0.0.1" start >/dev/null ||
        { cat "$WORK/pg/postgres.log" >&2; die "PostgreSQL did not start"; }
    "$PG_BIN_DIR/createdb" -h 127.0.0.1 -p "$port" -U postgres gateway
    PG_URL=postgres://postgres@127.0.0.1:$port/gateway
}

run_backend() {
    local backend=$1 url s r best half
    case $backend in
        sqlite) url=sqlite://$WORK/sqlite/gateway.db ;;
        postgres) start_postgres; url=$PG_URL ;;
    esac
    start_gateway "$backend" "$url"

    log "checking that every gateway scenario answers 200 ($backend)"
    for s in "${SCENARIOS[@]}"; do
        [[ $s == nginx ]] && continue
        scenario_headers "$s"
        expect_200 "$(scenario_url "$s")" "$(scenario_partner "$s")" ${HDRS[@]+"${HDRS[@]}"} ||
            die "scenario $s on $backend does not answer 200: a benchmark of refusals measures nothing"
    done

    for r in $(seq "$ROUNDS"); do
        log "round $r/$ROUNDS ($backend, $DURATION per scenario, $CONNECTIONS connections)"
        for s in "${SCENARIOS[@]}"; do
            run_oha "$backend" "$s" "r$r"
        done
    done

    best=$(python3 - "$OUT" "$backend" "$ROUNDS" <<'EOF'
import json, sys
out, backend, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
print(max(json.load(open(f"{out}/{backend}-disclosure-r{r}.json"))["summary"]["requestsPerSec"]
          for r in range(1, rounds + 1)))
EOF
)
    half=$(python3 -c "import sys; print(max(1, int(float(sys.argv[1]) / 2)))" "$best")
    log "disclosure at half its best rate: $half req/s ($backend)"
    echo "$half" >"$OUT/$backend-half-rate.txt"
    run_oha "$backend" disclosure half -q "$half"

    printf '%s\t%s\n' "$backend" "$(awk '/^VmHWM:/ {print $2}' /proc/"$GW_PID"/status)" >>"$PEAK_RSS"
    stop_gateway
    [[ $backend == postgres ]] && stop_postgres
    return 0
}

# ---------------------------------------------------------------------------------------
# 6. Scale-out: one gateway vs three behind HAProxy, on one PostgreSQL cluster
# ---------------------------------------------------------------------------------------

SCALE_PORTS=()
HA_ONE_PORT=
HA_THREE_PORT=
SCALE_PATH=/v1/records/crisis-incident/INC-2026-0042

scale_url() {
    case $1 in
        scale-1) echo "https://127.0.0.1:${SCALE_PORTS[0]}$SCALE_PATH" ;;
        scale-1-haproxy) echo "https://127.0.0.1:$HA_ONE_PORT$SCALE_PATH" ;;
        scale-3-haproxy) echo "https://127.0.0.1:$HA_THREE_PORT$SCALE_PATH" ;;
    esac
}

scale_cpu() { # CPU ticks of the three gateways and HAProxy
    local total=0 pid
    for pid in "${SCALE_PIDS[@]}" $HAPROXY_PID; do
        total=$((total + $(cpu_ticks "$pid")))
    done
    echo "$total"
}

# scenario label
run_scale_oha() {
    local scenario=$1 label=$2 url file before after db db_before db_after
    url=$(scale_url "$scenario")
    file=scale-$scenario-$label.json
    db=$(head -n 1 "$PG_DATA/postmaster.pid")
    db_before=$(cpu_ticks "$db")
    before=$(scale_cpu)
    # shellcheck disable=SC2046
    oha -z "$DURATION" -c "$CONNECTIONS" "${OHA_COMMON[@]}" $(tls_args county-mh) \
        -H "Authorization: Bearer $TOK_CLIN" -H "Purpose-Of-Use: treatment" \
        "$url" >"$OUT/$file" 2>"$WORK/oha.err" ||
        { cat "$WORK/oha.err" >&2; die "oha failed on $scenario"; }
    after=$(scale_cpu)
    db_after=$(cpu_ticks "$db")
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$scenario" "$label" "$file" "$((after - before))" \
        "$((db_after - db_before))" "$(cut -d ' ' -f 1 /proc/loadavg)" >>"$SCALE_RUNS"
    python3 - "$OUT/$file" "$scenario" "$label" <<'EOF' >&2
import json, sys
d = json.load(open(sys.argv[1]))
s, p = d["summary"], d["latencyPercentiles"]
codes = d.get("statusCodeDistribution", {})
non2xx = sum(n for c, n in codes.items() if not str(c).startswith("2"))
print(f"    {sys.argv[2]:16} {sys.argv[3]:6} {s['requestsPerSec']:10.1f} req/s"
      f"  p50 {(p.get('p50') or 0) * 1000:7.2f} ms  p99 {(p.get('p99') or 0) * 1000:7.2f} ms"
      f"  non-2xx {non2xx}")
EOF
}

run_scale_out() {
    local i port url r s ha=$WORK/haproxy started checks header
    SCALE_RUNS=$OUT/scale-runs.tsv
    printf 'scenario\tround\tfile\tcpu_ticks\tdb_cpu_ticks\tload1\n' >"$SCALE_RUNS"
    rm -rf "$WORK/pg" # a cluster of its own, even after the postgres backend's run
    start_postgres
    url=$PG_URL
    started=$(date +%s)
    # Three gateways on one configuration and one database; the first seeds the demo data.
    for i in 1 2 3; do
        port=$(free_port)
        SCALE_PORTS+=("$port")
        log "scale-out gateway $i on 127.0.0.1:$port"
        if [[ $i == 1 ]]; then
            GATEWAY__SERVER__LISTEN=127.0.0.1:$port GATEWAY__STORAGE__URL=$url \
                "$BIN" demo --dir "$DEV" --policies "$ROOT/policies" >"$WORK/scale-gateway-$i.log" 2>&1 &
        else
            GATEWAY__SERVER__LISTEN=127.0.0.1:$port GATEWAY__STORAGE__URL=$url \
                "$BIN" serve --config "$CONFIG" >"$WORK/scale-gateway-$i.log" 2>&1 &
        fi
        SCALE_PIDS+=("$!")
        wait_ready "$!" "https://127.0.0.1:$port/healthz" county-mh "scale-out gateway $i" \
            "$WORK/scale-gateway-$i.log"
    done

    # HAProxy as in the README: mode tcp (mutual TLS ends at the gateways), health checks on
    # /healthz over TLS with a partner certificate, the gateways' certificate verified.
    mkdir -p "$ha"
    cat "$DEV/county-mh.pem" "$DEV/county-mh-key.pem" >"$ha/check-client.pem"
    chmod 600 "$ha/check-client.pem"
    HA_ONE_PORT=$(free_port)
    HA_THREE_PORT=$(free_port)
    checks="check inter 500ms fall 2 rise 2 on-marked-down shutdown-sessions check-ssl check-sni localhost verify required verifyhost localhost ca-file $DEV/ca.pem crt $ha/check-client.pem"
    cat >"$ha/haproxy.cfg" <<EOF
global
    maxconn 4096

defaults
    mode tcp
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    timeout check 2s
    retries 3
    option redispatch 1

frontend one
    bind 127.0.0.1:$HA_ONE_PORT
    default_backend one

frontend three
    bind 127.0.0.1:$HA_THREE_PORT
    default_backend three

backend one
    option httpchk
    http-check send meth GET uri /healthz ver HTTP/1.1 hdr Host localhost
    http-check expect status 200
    default-server $checks
    server g1 127.0.0.1:${SCALE_PORTS[0]}

backend three
    balance roundrobin
    option httpchk
    http-check send meth GET uri /healthz ver HTTP/1.1 hdr Host localhost
    http-check expect status 200
    default-server $checks
    server g1 127.0.0.1:${SCALE_PORTS[0]}
    server g2 127.0.0.1:${SCALE_PORTS[1]}
    server g3 127.0.0.1:${SCALE_PORTS[2]}
EOF
    "$HAPROXY" -c -f "$ha/haproxy.cfg" >"$ha/check.log" 2>&1 ||
        { cat "$ha/check.log" >&2; die "haproxy refused its configuration"; }
    log "HAProxy on 127.0.0.1:$HA_ONE_PORT (one gateway) and 127.0.0.1:$HA_THREE_PORT (three)"
    "$HAPROXY" -db -f "$ha/haproxy.cfg" >"$ha/haproxy.log" 2>&1 &
    HAPROXY_PID=$!
    for s in "${SCALE_SCENARIOS[@]}"; do
        for i in $(seq 100); do
            # shellcheck disable=SC2046
            curl -sf -o /dev/null $(tls_args county-mh) -H "Authorization: Bearer $TOK_CLIN" \
                -H "Purpose-Of-Use: treatment" "$(scale_url "$s")" && break
            sleep 0.2
        done
        expect_200 "$(scale_url "$s")" county-mh -H "Authorization: Bearer $TOK_CLIN" \
            -H "Purpose-Of-Use: treatment" || die "scale-out scenario $s does not answer 200"
    done

    for r in $(seq "$ROUNDS"); do
        log "scale-out round $r/$ROUNDS ($DURATION per scenario, $CONNECTIONS connections)"
        for s in "${SCALE_SCENARIOS[@]}"; do
            run_scale_oha "$s" "r$r"
        done
    done
    stop_scale_out
    stop_postgres

    header="Scale-out run: commit $COMMIT, $(date -u '+%Y-%m-%d %H:%M UTC'), nproc $(nproc), \
load average $(cut -d ' ' -f 1-3 /proc/loadavg) after the runs; $("$HAPROXY" -v | head -n 1); \
PostgreSQL $("$PG_BIN_DIR/postgres" --version | awk '{print $3}') (fsync on); disclosure \
scenario, $ROUNDS rounds of $DURATION per scenario, $CONNECTIONS connections; \
$(($(date +%s) - started)) s."
    python3 - "$OUT" "$SCALE_RUNS" "$CLK_TCK" "$header" "${SCALE_SCENARIOS[@]}" <<'EOF' >"$OUT/scale-out.md"
import csv, json, statistics, sys
out, runs_file, clk, header = sys.argv[1:5]
clk = int(clk)
scenarios = sys.argv[5:]
rows = {}
for r in csv.DictReader(open(runs_file), delimiter="\t"):
    d = json.load(open(f"{out}/{r['file']}"))
    s, p = d["summary"], d["latencyPercentiles"]
    codes = d.get("statusCodeDistribution", {})
    rows.setdefault(r["scenario"], []).append({
        "rps": s["requestsPerSec"],
        "p50": (p.get("p50") or 0) * 1000,
        "p99": (p.get("p99") or 0) * 1000,
        "non2xx": sum(n for c, n in codes.items() if not str(c).startswith("2")),
        "cores": int(r["cpu_ticks"]) / clk / s["total"],
        "db_cores": int(r["db_cpu_ticks"]) / clk / s["total"],
        "load1": float(r["load1"]),
    })
print(header)
print()
print("| scenario | req/s (median) | req/s (min-max) | p50 ms | p99 ms | non-2xx | "
      "gateways + HAProxy cores | PostgreSQL cores | ratio to scale-1 |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
base = statistics.median(x["rps"] for x in rows["scale-1"])
med = {}
for sc in scenarios:
    xs = rows[sc]
    rps = [x["rps"] for x in xs]
    med[sc] = statistics.median(rps)
    print(f"| {sc} | {med[sc]:,.0f} | {min(rps):,.0f}-{max(rps):,.0f} "
          f"| {statistics.median(x['p50'] for x in xs):,.2f} "
          f"| {statistics.median(x['p99'] for x in xs):,.2f} "
          f"| {sum(x['non2xx'] for x in xs)} "
          f"| {statistics.median(x['cores'] for x in xs):,.2f} "
          f"| {statistics.median(x['db_cores'] for x in xs):,.2f} "
          f"| {med[sc] / base:.3f} |")
print()
loads = [x["load1"] for xs in rows.values() for x in xs]
print(f"- three replicas behind HAProxy vs one replica: {med['scale-3-haproxy'] / base:.2f}x "
      f"(HAProxy in front of one replica: {med['scale-1-haproxy'] / base:.2f}x)")
print(f"- 1-minute load average at the end of each run: {min(loads):.2f} to {max(loads):.2f}")
EOF
    cp "$OUT/scale-out.md" "$ROOT/target/load/latest-scale-out.md"
    echo
    cat "$OUT/scale-out.md"
    echo
}

LOAD_BEFORE=$(uptime)
START=$(date +%s)
if [[ $SCALE_OUT != only ]]; then
    for b in $BACKENDS; do
        run_backend "$b"
    done
fi
LOAD_AFTER=$(uptime)
ELAPSED=$(($(date +%s) - START))

if [[ $SCALE_OUT == only ]]; then
    run_scale_out
    exit 0
fi

# ---------------------------------------------------------------------------------------
# 7. The table
# ---------------------------------------------------------------------------------------

HEADER="Load run: commit $COMMIT, $(date -u '+%Y-%m-%d %H:%M UTC'), nproc $(nproc), load average \
${LOAD_BEFORE##*load average: } before the runs, ${LOAD_AFTER##*load average: } after; \
$(oha --version), $("$NGINX" -v 2>&1 | sed 's/^.*: //'); $ROUNDS rounds of $DURATION per scenario, \
$CONNECTIONS connections, HTTP/1.1 keep-alive, mutual TLS; $ELAPSED s of runs."

python3 - "$OUT" "$RUNS" "$PEAK_RSS" "$CLK_TCK" "$HEADER" "${SCENARIOS[@]}" <<'EOF' >"$OUT/table.md"
import csv, json, statistics, sys
out, runs_file, rss_file, clk, header = sys.argv[1:6]
clk = int(clk)
scenarios = sys.argv[6:]

print(header)
print()

rows = {}
for r in csv.DictReader(open(runs_file), delimiter="\t"):
    d = json.load(open(f"{out}/{r['file']}"))
    s, p = d["summary"], d["latencyPercentiles"]
    codes = d.get("statusCodeDistribution", {})
    errors = d.get("errorDistribution", {})
    rows.setdefault((r["backend"], r["scenario"], r["round"] == "half"), []).append({
        "rps": s["requestsPerSec"],
        "p50": (p.get("p50") or 0) * 1000,
        "p99": (p.get("p99") or 0) * 1000,
        "non2xx": sum(n for c, n in codes.items() if not str(c).startswith("2")),
        "errors": errors,
        "cores": int(r["cpu_ticks"]) / clk / s["total"],
        "db_cores": int(r["db_cpu_ticks"]) / clk / s["total"] if r["db_cpu_ticks"] else None,
        "load1": float(r["load1"]),
    })

def fmt(x, digits=0):
    return f"{x:,.{digits}f}"

def db_cores(xs):
    v = [x["db_cores"] for x in xs if x["db_cores"] is not None]
    return fmt(statistics.median(v), 2) if v else "-"

print("| backend | scenario | req/s (median) | req/s (min-max) | p50 ms | p99 ms | non-2xx | "
      "server cores | PostgreSQL cores | ratio to nginx |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
backends = list(dict.fromkeys(k[0] for k in rows))
notes = []
for b in backends:
    nginx = statistics.median(x["rps"] for x in rows[(b, "nginx", False)])
    for sc in scenarios:
        xs = rows.get((b, sc, False))
        if not xs:
            continue
        rps = [x["rps"] for x in xs]
        med = statistics.median(rps)
        print(f"| {b} | {sc} | {fmt(med)} | {fmt(min(rps))}-{fmt(max(rps))} "
              f"| {fmt(statistics.median(x['p50'] for x in xs), 2)} "
              f"| {fmt(statistics.median(x['p99'] for x in xs), 2)} "
              f"| {sum(x['non2xx'] for x in xs)} "
              f"| {fmt(statistics.median(x['cores'] for x in xs), 2)} "
              f"| {db_cores(xs)} "
              f"| {med / nginx:.3f} |")
        errs = {}
        for x in xs:
            for k, n in x["errors"].items():
                errs[k] = errs.get(k, 0) + n
        if errs:
            notes.append(f"{b} {sc}: client-side errors over all rounds: "
                         + ", ".join(f"{k}: {n}" for k, n in errs.items()))
print()
print("req/s, p50 and p99 are medians over the rounds; non-2xx is the total over the rounds; "
      "server cores is the CPU time of the server (the gateway, or nginx's master and workers) "
      "per second of run, PostgreSQL cores that of the PostgreSQL server and its backends; "
      "oha shares the same cores.")
print()
for b in backends:
    loads = [x["load1"] for k, xs in rows.items() if k[0] == b for x in xs]
    print(f"- 1-minute load average at the end of each {b} run: {min(loads):.2f} to "
          f"{max(loads):.2f} (the run's own oha and server account for about 2)")
for line in open(rss_file):
    b, kib = line.split()
    print(f"- gateway peak RSS ({b}, VmHWM after the runs): {int(kib) / 1024:.1f} MiB")
for b in backends:
    h = rows.get((b, "disclosure", True))
    if h:
        x = h[0]
        target = open(f"{out}/{b}-half-rate.txt").read().strip()
        print(f"- disclosure at half its best rate ({b}, oha -q {target}): {fmt(x['rps'])} req/s, "
              f"p50 {fmt(x['p50'], 2)} ms, p99 {fmt(x['p99'], 2)} ms, non-2xx {x['non2xx']}, "
              f"gateway cores {fmt(x['cores'], 2)}")
for n in notes:
    print(f"- {n}")
EOF

cp "$OUT/table.md" "$ROOT/target/load/latest.md"
echo
cat "$OUT/table.md"
echo
echo "raw oha JSON and logs: ${OUT#"$ROOT"/}/ ($ELAPSED s of runs)"

[[ $SCALE_OUT == 1 ]] && run_scale_out
exit 0
