# shellcheck shell=bash
# Variables defined here are used by the scripts that source this file:
# shellcheck disable=SC2034
# Shared helpers for the dev/ scripts.  Sourced, never executed:
#
#   source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#
# Sourcing this file has no side effects beyond defining variables and
# functions (dev/env relies on that): directories are only created by
# fs_init_dirs, which the scripts that start things call explicitly.

# ---------------------------------------------------------------------------
# Layout
# ---------------------------------------------------------------------------

# The repo root is found from this file's own location, so every script works
# no matter which directory it is started from (including a CI clone elsewhere).
FS_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
FS_DEV="$FS_ROOT/.dev"          # gitignored: all runtime state lives here
FS_LOGS="$FS_DEV/logs"          # .dev/logs/NAME.log
FS_PIDS="$FS_DEV/pids"          # .dev/pids/NAME.pid (tests may add their own)
FS_VENV="$FS_DEV/venv"

# Which cargo profile dev/up builds and runs: `dev` (quick to rebuild; what
# the tests and the demo use) or `release` (what dev/bench uses, so figures
# are those of optimised code).
: "${FLASHSALE_PROFILE:=dev}"
case "$FLASHSALE_PROFILE" in
  dev) FS_PROFILE_DIR=debug ;;
  release) FS_PROFILE_DIR=release ;;
  *) echo "FLASHSALE_PROFILE must be dev or release, not $FLASHSALE_PROFILE" >&2; exit 2 ;;
esac
# Where the workspace binaries are taken from.  Overridable so the scripts can
# be exercised against other builds without editing them.
: "${FLASHSALE_BIN_DIR:=$FS_ROOT/target/$FS_PROFILE_DIR}"

# ---------------------------------------------------------------------------
# Endpoint contract.  Every value can be overridden from the environment; the
# processes dev/up starts derive their listen addresses from these URLs, so
# overriding a URL moves the matching process too (single source of truth).
# ---------------------------------------------------------------------------
: "${FLASHSALE_BROKERS:=127.0.0.1:19092}"
: "${FLASHSALE_SCHEMA_REGISTRY_URL:=http://127.0.0.1:18081/apis/ccompat/v7}"
: "${FLASHSALE_MYSQL_URL:=mysql://flashsale:flashsale@127.0.0.1:13306/flashsale}"
: "${FLASHSALE_REDIS_URL:=redis://127.0.0.1:16379/}"
: "${FLASHSALE_INGRESS_URL:=http://127.0.0.1:18080}"
: "${FLASHSALE_REQUESTS_TOPIC:=flashsale.requests}"
: "${FLASHSALE_OUTCOMES_TOPIC:=flashsale.outcomes}"
: "${FLASHSALE_DEAD_LETTER_TOPIC:=flashsale.dead-letter}"
: "${FLASHSALE_SNAPSHOTS_TOPIC:=flashsale.snapshots}"
: "${FLASHSALE_PARTITIONS:=8}"
export FLASHSALE_BROKERS FLASHSALE_SCHEMA_REGISTRY_URL FLASHSALE_MYSQL_URL \
  FLASHSALE_REDIS_URL FLASHSALE_INGRESS_URL FLASHSALE_REQUESTS_TOPIC \
  FLASHSALE_OUTCOMES_TOPIC FLASHSALE_DEAD_LETTER_TOPIC FLASHSALE_SNAPSHOTS_TOPIC \
  FLASHSALE_PARTITIONS

# Metrics/health listeners of the long-running services.  FLASHSALE_METRICS_LISTEN
# itself is per process, so it is set only in each service's own environment.
: "${FLASHSALE_DEV_PROCESSOR_METRICS:=127.0.0.1:19101}"
: "${FLASHSALE_DEV_SINK_MYSQL_METRICS:=127.0.0.1:19102}"
: "${FLASHSALE_DEV_SINK_REDIS_METRICS:=127.0.0.1:19103}"
# The ingress answers /health on FLASHSALE_INGRESS_LISTEN and serves its ops
# endpoint (metrics) on FLASHSALE_METRICS_LISTEN, which gets this address.
: "${FLASHSALE_DEV_INGRESS_METRICS:=127.0.0.1:19104}"

# Apache Kafka (KRaft, one node) and Apicurio Registry, both fetched from
# Maven Central by dev/kafka/pom.xml and dev/registry/pom.xml into a cache
# outside the clone, so a fresh clone (CI) reuses what an earlier run fetched.
: "${FLASHSALE_CACHE:=${XDG_CACHE_HOME:-$HOME/.cache}/flashsale}"
# The KRaft controller's port (clients never use it): beside the client port.
: "${FLASHSALE_KAFKA_CONTROLLER_PORT:=19093}"
# JVM heaps: the whole stack shares a 2-core machine with the tests.
: "${FLASHSALE_KAFKA_HEAP:=512m}"
: "${FLASHSALE_REGISTRY_HEAP:=256m}"

# Long-running processes dev/up starts, in start order.  dev/down stops them in
# reverse order (services before the infrastructure they use).
FS_INFRA_NAMES=(kafka mariadb redis registry)
FS_SERVICE_NAMES=(processor sink-mysql sink-redis ingress)

# Seconds to wait for each process to answer after it was started.
: "${FLASHSALE_UP_TIMEOUT:=90}"

# The variables dev/env prints (and dev/test exports to cargo test / pytest).
FS_ENV_VARS=(
  FLASHSALE_BROKERS FLASHSALE_SCHEMA_REGISTRY_URL FLASHSALE_MYSQL_URL
  FLASHSALE_REDIS_URL FLASHSALE_INGRESS_URL FLASHSALE_REQUESTS_TOPIC
  FLASHSALE_OUTCOMES_TOPIC FLASHSALE_DEAD_LETTER_TOPIC FLASHSALE_SNAPSHOTS_TOPIC
  FLASHSALE_PARTITIONS FLASHSALE_BIN_DIR
)

# ---------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------

# Colour only on a terminal, and never when NO_COLOR is set (CI logs stay clean).
if [[ -t 1 && -z "${NO_COLOR:-}" ]]; then
  FS_RED=$'\e[31;1m' FS_GREEN=$'\e[32;1m' FS_YELLOW=$'\e[33;1m' FS_BOLD=$'\e[1m' FS_OFF=$'\e[0m'
else
  FS_RED='' FS_GREEN='' FS_YELLOW='' FS_BOLD='' FS_OFF=''
fi

fs_info() { printf '%s==>%s %s\n' "$FS_BOLD" "$FS_OFF" "$*"; }
fs_ok()   { printf '%s ok%s %s\n' "$FS_GREEN" "$FS_OFF" "$*"; }
fs_warn() { printf '%swarning:%s %s\n' "$FS_YELLOW" "$FS_OFF" "$*" >&2; }
fs_err()  { printf '%serror:%s %s\n' "$FS_RED" "$FS_OFF" "$*" >&2; }
fs_die()  { fs_err "$*"; exit 1; }

# Print the end of a log so a failure can be diagnosed without hunting for the
# file.  start_bg appends a "===== ... starting" header per start, so only the
# latest start's lines are shown (at most LINES of them).
fs_log_tail() {
  local log="$1" lines="${2:-40}"
  if [[ -s "$log" ]]; then
    printf '%s----- %s (last start, up to %s lines) -----%s\n' "$FS_YELLOW" "$log" "$lines" "$FS_OFF" >&2
    awk '/^===== / { n = 0; delete buf } { buf[n++] = $0 } END { for (i = 0; i < n; i++) print buf[i] }' "$log" \
      | tail -n "$lines" >&2
    printf '%s----- end of %s -----%s\n' "$FS_YELLOW" "$log" "$FS_OFF" >&2
  else
    printf '(log %s is empty or missing)\n' "$log" >&2
  fi
}

fs_log_file() { printf '%s/%s.log' "$FS_LOGS" "$1"; }
fs_pid_file() { printf '%s/%s.pid' "$FS_PIDS" "$1"; }

fs_init_dirs() {
  mkdir -p "$FS_LOGS" "$FS_PIDS"
}

# Seconds since the epoch, for step timings.
fs_now() { date +%s; }

# ---------------------------------------------------------------------------
# Address parsing (URLs are the single source of truth for ports)
# ---------------------------------------------------------------------------

# fs_hostport URL_OR_HOSTPORT -> "host port" (first entry of a comma list).
fs_hostport() {
  local s="${1%%,*}"
  s="${s#*://}"       # drop scheme
  s="${s##*@}"        # drop credentials
  s="${s%%/*}"        # drop path
  local host="${s%:*}" port="${s##*:}"
  [[ "$host" != "$s" && "$port" =~ ^[0-9]+$ ]] || { fs_err "cannot find host:port in '$1'"; return 1; }
  host="${host#[}"; host="${host%]}"
  printf '%s %s\n' "$host" "$port"
}

# fs_mysql_url_parts URL -> "user password host port database"
fs_mysql_url_parts() {
  local re='^mysql://([^:@/]+):([^@/]*)@([^:/]+):([0-9]+)/([A-Za-z0-9_]+)'
  [[ "$1" =~ $re ]] || { fs_err "FLASHSALE_MYSQL_URL must look like mysql://user:pass@host:port/db, got '$1'"; return 1; }
  printf '%s %s %s %s %s\n' "${BASH_REMATCH[1]}" "${BASH_REMATCH[2]}" "${BASH_REMATCH[3]}" "${BASH_REMATCH[4]}" "${BASH_REMATCH[5]}"
}

# ---------------------------------------------------------------------------
# Packages
# ---------------------------------------------------------------------------

FS_APT_UPDATED=0

# ensure_apt_pkgs PKG...: install the Debian packages that are not installed
# yet.  `apt-get update` runs at most once per script run and only when
# something is actually missing, so a warm machine pays nothing.
ensure_apt_pkgs() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  local sudo=()
  if ((EUID != 0)); then
    command -v sudo >/dev/null || fs_die "missing packages (${missing[*]}) and not root/no sudo: install them by hand"
    sudo=(sudo)
  fi
  local t0; t0=$(fs_now)
  fs_info "installing Debian packages: ${missing[*]}"
  if ((FS_APT_UPDATED == 0)); then
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq || fs_die "apt-get update failed"
    FS_APT_UPDATED=1
  fi
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" \
    || fs_die "apt-get install ${missing[*]} failed"
  fs_ok "installed ${missing[*]} in $(($(fs_now) - t0))s"
}

# Packages the local stack needs:
#  - build-essential cmake pkg-config libssl-dev libcurl4-openssl-dev: rdkafka
#    builds librdkafka from source with cmake;
#  - mariadb-server-core / mariadb-client-core: mariadbd, mariadb-install-db and
#    the mariadb client WITHOUT the full mariadb-server package, whose postinst
#    would also start a system-wide server on 3306 that we neither need nor use;
#  - redis-server / redis-tools: redis-server, redis-cli;
#  - kcat: the README's topic inspection commands (and the test that tries them);
#  - curl (readiness probes), iproute2 (ss, to name who holds a busy port),
#    procps, util-linux (setsid, flock).
# Java and Maven are ensured separately (ensure_java), only when missing.
FS_APT_PKGS=(
  build-essential cmake pkg-config libssl-dev libcurl4-openssl-dev
  mariadb-server-core mariadb-client-core redis-server redis-tools kcat
  curl ca-certificates iproute2 procps util-linux
)

ensure_cargo() {
  # Cargo installed by rustup lives in ~/.cargo/bin, which non-login shells
  # (CI, cron) may not have on PATH.
  if ! command -v cargo >/dev/null && [[ -x "$HOME/.cargo/bin/cargo" ]]; then
    PATH="$HOME/.cargo/bin:$PATH"; export PATH
  fi
  command -v cargo >/dev/null || fs_die "cargo not found: install a Rust toolchain (rustup) first"
}

# ---------------------------------------------------------------------------
# Java, Maven and the JVM parts of the stack (Kafka, the schema registry)
# ---------------------------------------------------------------------------

# fs_java_major JAVA: the feature version of a java binary (17, 21, ...), or
# nothing when it does not run.
fs_java_major() {
  "$1" -XshowSettings:properties -version 2>&1 \
    | awk -F'= ' '/java.specification.version/ { sub(/^1\./, "", $2); print $2; exit }'
}

# ensure_java: set FS_JAVA to a Java >= 17 (Kafka 4's broker and Apicurio
# Registry 3.0 need it). Tried in order: FLASHSALE_JAVA, $JAVA_HOME, java on
# PATH, any JVM under /usr/lib/jvm; else Debian's headless JRE is installed.
ensure_java() {
  [[ -n "${FS_JAVA:-}" ]] && return 0
  local c major candidates
  # An explicit choice is the only candidate: a wrong one is an error, not
  # something to work around silently.
  if [[ -n "${FLASHSALE_JAVA:-}" ]]; then
    candidates=("$FLASHSALE_JAVA")
  else
    candidates=("${JAVA_HOME:+$JAVA_HOME/bin/java}" "$(command -v java 2>/dev/null || true)" /usr/lib/jvm/*/bin/java)
  fi
  for c in "${candidates[@]}"; do
    [[ -n "$c" && -x "$c" ]] || continue
    major="$(fs_java_major "$c")"
    if [[ "$major" =~ ^[0-9]+$ ]] && ((major >= 17)); then
      FS_JAVA="$c"; return 0
    fi
  done
  [[ -n "${FLASHSALE_JAVA:-}" ]] && fs_die "FLASHSALE_JAVA=$FLASHSALE_JAVA is not a Java 17 or newer"
  # Debian 12 ships 17; later releases name their default JRE differently.
  if apt-cache show openjdk-17-jre-headless >/dev/null 2>&1; then
    ensure_apt_pkgs openjdk-17-jre-headless
  else
    ensure_apt_pkgs default-jre-headless
  fi
  FS_JAVA="$(command -v java)" || fs_die "installed a JRE but no java is on PATH"
}

# ensure_maven: Maven fetches the Kafka and registry artifacts (once).
ensure_maven() {
  command -v mvn >/dev/null || ensure_apt_pkgs maven
}

# fs_pom_property POM NAME: a <properties> value of a committed pom.xml, so
# each version is written down once, in the pom that fetches it.
fs_pom_property() {
  sed -n "s:.*<$2>\\(.*\\)</$2>.*:\\1:p" "$1" | head -n1
}

# fs_fetch_cached NAME POM DEST GOAL: run `mvn dependency:GOAL` for POM
# (copy-dependencies: a pom's dependencies with theirs; copy: the files its
# plugin configuration names) into DEST/jars, once. Callers name DEST after
# the pom's content hash, so editing a pom fetches again and an unchanged one
# never does. A flock serialises concurrent dev/up runs; the copy goes to a
# temporary folder and is renamed only when complete, so an interrupted
# fetch is redone.
fs_fetch_cached() {
  local name="$1" pom="$2" dest="$3" goal="$4"
  [[ -f "$dest/.complete" ]] && return 0
  ensure_java
  ensure_maven
  mkdir -p "$FLASHSALE_CACHE"
  fs_init_dirs
  local log t0; log="$(fs_log_file "fetch-$name")"; t0=$(fs_now)
  fs_info "fetching $name from Maven Central into $dest (first time only); log: $log"
  if ! (
    flock 9
    [[ -f "$dest/.complete" ]] && exit 0
    rm -rf "$dest.partial"
    JAVA_HOME="$(dirname "$(dirname "$(readlink -f "$FS_JAVA")")")" \
      mvn -B -q -f "$pom" "dependency:$goal" -DoutputDirectory="$dest.partial/jars" >"$log" 2>&1 || exit 1
    touch "$dest.partial/.complete"
    rm -rf "$dest"
    mv "$dest.partial" "$dest"
  ) 9>"$FLASHSALE_CACHE/.fetch-$name.lock"; then
    fs_err "fetching $name with Maven failed"
    fs_log_tail "$log" 40
    exit 1
  fi
  fs_ok "$name ready in $(($(fs_now) - t0))s"
}

# fs_cache_dir POM PREFIX: where the artifacts of POM are kept:
# CACHE/PREFIX-VERSION-HASH, the hash being the pom's own.
fs_cache_dir() {
  local hash; hash="$(sha256sum "$1" | cut -c1-12)"
  printf '%s/%s-%s\n' "$FLASHSALE_CACHE" "$2" "$hash"
}

# ensure_kafka: set FS_KAFKA_LIBS to the folder of the broker's jars.
ensure_kafka() {
  ensure_java
  local pom="$FS_ROOT/dev/kafka/pom.xml" dir
  FS_KAFKA_VERSION="$(fs_pom_property "$pom" kafka.version)"
  dir="$(fs_cache_dir "$pom" "kafka-$FS_KAFKA_VERSION")"
  fs_fetch_cached "kafka-$FS_KAFKA_VERSION" "$pom" "$dir" copy-dependencies
  FS_KAFKA_LIBS="$dir/jars"
}

# ensure_registry: set FS_REGISTRY_JAR to Apicurio Registry's runner jar,
# unpacked from the distribution archive the pom fetches.
ensure_registry() {
  ensure_java
  local pom="$FS_ROOT/dev/registry/pom.xml" dir version
  version="$(fs_pom_property "$pom" apicurio.version)"
  dir="$(fs_cache_dir "$pom" "apicurio-registry-$version")"
  fs_fetch_cached "apicurio-registry-$version" "$pom" "$dir" copy
  if [[ ! -f "$dir/app/.complete" ]]; then
    rm -rf "$dir/app"
    mkdir -p "$dir/app"
    tar -xzf "$dir/jars/apicurio-registry-app-$version-all.tar.gz" -C "$dir/app" \
      || fs_die "could not unpack Apicurio Registry $version in $dir"
    touch "$dir/app/.complete"
  fi
  FS_REGISTRY_JAR="$dir/app/apicurio-registry-app-$version-runner.jar"
  [[ -f "$FS_REGISTRY_JAR" ]] || fs_die "$FS_REGISTRY_JAR is missing from the Apicurio archive"
}

# fs_kafka_tool CLASS ARGS...: run one of Kafka's Java tools (console
# consumer, topics, perf tests) from the fetched jars, quietly logging.
fs_kafka_tool() {
  ensure_kafka >&2
  "$FS_JAVA" -Xmx256m -Dlog4j2.configurationFile="$FS_ROOT/dev/kafka/log4j2-tools.properties" \
    -cp "$FS_KAFKA_LIBS/*" "$@"
}

# ---------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------

# fs_pid NAME: print the pid recorded for NAME if that process is still alive.
# A pid file can outlive its process (reboot, kill -9); to avoid ever signalling
# an unrelated process that reused the pid, the process must have started no
# later than the pid file was written.
fs_pid() {
  local f; f="$(fs_pid_file "$1")"
  [[ -s "$f" ]] || return 1
  local pid; pid="$(head -n1 "$f" | tr -dc '0-9')"
  [[ -n "$pid" && -r "/proc/$pid/stat" ]] || return 1
  local stat; stat="$(cat "/proc/$pid/stat" 2>/dev/null)" || return 1
  # Fields after "pid (comm) ": state is 1st, starttime is 20th.
  local rest="${stat##*) }" state starttime
  read -r state _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ starttime _ <<<"$rest"
  [[ "$state" != Z && "$state" != X ]] || return 1
  local btime tck started written
  btime="$(awk '/^btime/ {print $2}' /proc/stat)"
  tck="$(getconf CLK_TCK)"
  started=$((btime + starttime / tck))
  written="$(stat -c %Y "$f")"
  ((started <= written + 5)) || return 1
  printf '%s\n' "$pid"
}

fs_is_running() { fs_pid "$1" >/dev/null; }

# start_bg NAME CMD...: start CMD detached (own session, so a Ctrl-C in the
# terminal that ran dev/up does not take the stack down), stdout+stderr
# appended to .dev/logs/NAME.log, pid in .dev/pids/NAME.pid.  No-op when NAME
# is already running.  The working directory is FS_START_DIR (default: repo
# root), so relative paths in CMD are stable.
start_bg() {
  local name="$1"; shift
  fs_init_dirs
  if fs_is_running "$name"; then
    return 0
  fi
  local log pidf
  log="$(fs_log_file "$name")"; pidf="$(fs_pid_file "$name")"
  rm -f "$pidf"
  printf '\n===== %s starting %s: %s\n' "$(date '+%F %T')" "$name" "$*" >>"$log"
  # The subshell execs setsid, which (not being a group leader) execs CMD in
  # place: $! is therefore CMD's own pid.
  # NO_COLOR: the output goes to a file, keep it free of terminal escapes.
  (cd "${FS_START_DIR:-$FS_ROOT}" && export NO_COLOR=1 && exec setsid "$@") </dev/null >>"$log" 2>&1 &
  echo "$!" >"$pidf"
}

# fs_died NAME: report that NAME's process is gone, with its exit status when
# this shell started it (start_bg's processes are our children until we exit)
# and its log tail.
fs_died() {
  local name="$1" pid="" rc="" how
  pid="$(head -n1 "$(fs_pid_file "$name")" 2>/dev/null | tr -dc '0-9')" || true
  if [[ -n "$pid" ]]; then
    wait "$pid" 2>/dev/null && rc=0 || rc=$?
    ((rc == 127)) && rc=""   # not our child: status unknown
  fi
  how="exited during startup"
  if [[ -n "$rc" ]]; then
    how="exited during startup with status $rc"
    ((rc > 128)) && how="was killed by signal $((rc - 128)) during startup"
    ((rc == 0)) && how="exited at once with status 0 (is its main() still a stub?)"
  fi
  fs_err "$name (pid ${pid:-?}) $how; log: $(fs_log_file "$name")"
  fs_log_tail "$(fs_log_file "$name")" "${2:-30}"
  FS_DIED_HOW="$how"
}

# wait_until TIMEOUT NAME CMD...: poll CMD until it succeeds.  When NAME is
# not "-", give up at once if NAME's process died (a crashing binary fails
# fast instead of after the full timeout).
wait_until() {
  local timeout="$1" name="$2"; shift 2
  local deadline=$((SECONDS + timeout))
  while ((SECONDS < deadline)); do
    "$@" >/dev/null 2>&1 && return 0
    if [[ "$name" != - ]] && ! fs_is_running "$name"; then
      # One last try: the process may have answered and exited on purpose.
      "$@" >/dev/null 2>&1 && return 0
      fs_died "$name"
      return 1
    fi
    sleep 0.25
  done
  return 1
}

fs_tcp_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }
fs_http_ok()  { curl -fsS -o /dev/null --max-time 2 "$1"; }

# wait_tcp HOST PORT TIMEOUT [NAME]
wait_tcp() {
  local host="$1" port="$2" timeout="$3" name="${4:--}"
  wait_until "$timeout" "$name" fs_tcp_open "$host" "$port" && return 0
  [[ "$name" != - ]] && ! fs_is_running "$name" && return 1   # already reported
  fs_err "nothing answered on $host:$port within ${timeout}s$([[ "$name" != - ]] && printf ' (%s)' "$name")"
  [[ "$name" != - ]] && fs_log_tail "$(fs_log_file "$name")" 30
  return 1
}

# wait_http URL TIMEOUT [NAME]: wait until URL answers 2xx.
wait_http() {
  local url="$1" timeout="$2" name="${3:--}"
  wait_until "$timeout" "$name" fs_http_ok "$url" && return 0
  [[ "$name" != - ]] && ! fs_is_running "$name" && return 1   # already reported
  fs_err "$url did not answer 2xx within ${timeout}s$([[ "$name" != - ]] && printf ' (%s)' "$name")"
  [[ "$name" != - ]] && fs_log_tail "$(fs_log_file "$name")" 30
  return 1
}

# fs_port_owner PORT: describe who listens on PORT (for error messages).
fs_port_owner() {
  ss -Hltnp "sport = :$1" 2>/dev/null | sed 's/^/    /' || true
}

# fs_require_free_port NAME HOST PORT: before starting NAME, fail clearly if
# something else (e.g. a leftover from another checkout) already holds PORT.
fs_require_free_port() {
  local name="$1" host="$2" port="$3"
  if fs_tcp_open "$host" "$port"; then
    fs_err "cannot start $name: $host:$port is already in use by a process dev/up does not own:"
    fs_port_owner "$port" >&2
    fs_err "stop it (or run dev/down from the checkout that started it), or move $name with the matching FLASHSALE_* variable"
    return 1
  fi
}

# stop_pid NAME [TIMEOUT]: TERM the process (its whole process group when it
# leads one, i.e. when start_bg started it), wait up to TIMEOUT seconds
# (default 15), then KILL.  Safe when NAME is not running.
stop_pid() {
  local name="$1" timeout="${2:-15}" pid
  local pidf; pidf="$(fs_pid_file "$name")"
  if ! pid="$(fs_pid "$name")"; then
    rm -f "$pidf"
    return 0
  fi
  local target=("$pid") pgid
  pgid="$(ps -o pgid= -p "$pid" 2>/dev/null | tr -d ' ')"
  [[ "$pgid" == "$pid" ]] && target=(-- "-$pid")
  kill -TERM "${target[@]}" 2>/dev/null || true
  local deadline=$((SECONDS + timeout))
  while fs_is_running "$name" && ((SECONDS < deadline)); do sleep 0.2; done
  if fs_is_running "$name"; then
    fs_warn "$name (pid $pid) ignored TERM for ${timeout}s: sending KILL"
    kill -KILL "${target[@]}" 2>/dev/null || true
    sleep 0.5
  fi
  if fs_is_running "$name"; then
    fs_err "$name (pid $pid) is still running after KILL"
    return 1
  fi
  rm -f "$pidf"
  printf '  stopped %-12s (pid %s)\n' "$name" "$pid"
}

# ---------------------------------------------------------------------------
# MariaDB helpers (shared by dev/up and the table it prints)
# ---------------------------------------------------------------------------

# Unix socket paths are limited to ~107 bytes; a deep checkout would overflow
# that, so fall back to a per-checkout path under /tmp in that case.
fs_mariadb_socket() {
  local sock="$FS_DEV/mariadb/mariadb.sock"
  if ((${#sock} > 100)); then
    sock="${TMPDIR:-/tmp}/flashsale-mariadb-$(printf '%s' "$FS_ROOT" | cksum | cut -d' ' -f1).sock"
  fi
  printf '%s\n' "$sock"
}

# fs_mariadb_admin ARGS...: the mariadb client as the administrative account
# mariadb-install-db created for the OS user (unix_socket auth, no password),
# over our own socket.  --no-defaults keeps /etc/mysql/*.cnf (the system
# server's socket and port) out of the picture.
fs_mariadb_admin() {
  mariadb --no-defaults --protocol=socket --socket="$(fs_mariadb_socket)" \
    --user="$(id -un)" "$@"
}
