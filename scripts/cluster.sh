#!/usr/bin/env bash
# Runs a local three-node Vault cluster with integrated storage (Raft) on
# 127.0.0.1, with the plugin copied into every node's plugin directory,
# registered once and mounted at noventiq/. It is for trying the plugin on
# a cluster, so TLS is off and every listener is on loopback.
#
#   scripts/cluster.sh start    build, start, initialise, unseal and join
#   scripts/cluster.sh status   each node's state and the Raft peers
#   scripts/cluster.sh stop     stop every node and delete the cluster's data
#
# Environment:
#   NOVENTIQ_CLUSTER_DIR      where the nodes keep their data, logs and the
#                             root token (default: build/cluster)
#   NOVENTIQ_CLUSTER_PORT     first of six consecutive loopback ports
#                             (default: 8210). Node N serves the API on
#                             PORT+2(N-1) and cluster traffic on the next port.
#   NOVENTIQ_CLUSTER_MAX_RUN  every node stops by itself after this long, in
#                             timeout(1) syntax (default: 2h)
#   VAULT_BIN                 the Vault binary (default: scripts/vault.sh)
#   PLUGIN_VERSION            the version built and mounted (default: v0.1.0)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# A relative NOVENTIQ_CLUSTER_DIR is relative to the caller's directory.
CLUSTER_DIR=${NOVENTIQ_CLUSTER_DIR:-$BUILD_DIR/cluster}
[[ $CLUSTER_DIR = /* ]] || CLUSTER_DIR=$PWD/$CLUSTER_DIR
cd "$ROOT"

BASE_PORT=${NOVENTIQ_CLUSTER_PORT:-8210}
MAX_RUN=${NOVENTIQ_CLUSTER_MAX_RUN:-2h}
NODES=(1 2 3)
# The file that marks a directory as one this script created, so that stop
# never deletes anything else.
MARKER=.noventiq-cluster

# A developer's own Vault settings must not reach the cluster's commands.
unset VAULT_ADDR VAULT_TOKEN VAULT_NAMESPACE VAULT_FORMAT VAULT_CACERT VAULT_CLIENT_CERT VAULT_CLIENT_KEY

# started is set once start has launched a node, so that a failure after
# that point prints how to end the nodes it leaves running for inspection.
started=

die() {
  echo "cluster.sh: $*" >&2
  [ -z "$started" ] || echo "cluster.sh: the nodes keep running for inspection; '$0 stop' ends them" >&2
  exit 1
}

api_port() { echo $((BASE_PORT + 2 * ($1 - 1))); }
api_addr() { echo "http://127.0.0.1:$(api_port "$1")"; }
node_dir() { echo "$CLUSTER_DIR/node$1"; }

# vault_at runs the Vault CLI against node $1 with the root token, if any.
vault_at() {
  local node=$1
  shift
  local token=
  [ -f "$CLUSTER_DIR/root-token" ] && token=$(cat "$CLUSTER_DIR/root-token")
  VAULT_ADDR=$(api_addr "$node") VAULT_TOKEN=$token "$VAULT" "$@"
}

# node_pid prints the id of node $1's watchdog process if it is running and
# is the one this script started for that node's config.
node_pid() {
  local pidfile pid
  pidfile=$(node_dir "$1")/pid
  [ -f "$pidfile" ] || return 1
  pid=$(cat "$pidfile")
  [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "-config=$(node_dir "$1")/vault.hcl" || return 1
  echo "$pid"
}

# running succeeds while process $1 exists and is not a zombie.
running() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [ "${stat%% *}" != Z ]
}

port_free() {
  ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# wait_for runs the command in $2... every half second until it succeeds or
# $1 seconds pass.
wait_for() {
  local seconds=$1
  shift
  local tries=$((seconds * 2))
  for _ in $(seq "$tries"); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.5
  done
  "$@"
}

responds() { vault_at "$1" status >/dev/null 2>&1 || [ $? = 2 ]; }
ha_mode_is() { vault_at "$1" status 2>/dev/null | grep -Eq "^HA Mode +$2\$"; }
voters_are() { [ "$(vault_at 1 operator raft list-peers -format=json | grep -c '"voter": true')" = "$1" ]; }

write_config() {
  local node=$1 dir port peers=
  dir=$(node_dir "$node")
  port=$(api_port "$node")
  for other in "${NODES[@]}"; do
    [ "$other" = "$node" ] && continue
    peers+="  retry_join {
    leader_api_addr = \"$(api_addr "$other")\"
  }
"
  done
  cat >"$dir/vault.hcl" <<HCL
ui               = false
disable_mlock    = true
api_addr         = "http://127.0.0.1:$port"
cluster_addr     = "https://127.0.0.1:$((port + 1))"
plugin_directory = "$dir/plugins"

listener "tcp" {
  address         = "127.0.0.1:$port"
  cluster_address = "127.0.0.1:$((port + 1))"
  tls_disable     = true
}

storage "raft" {
  path    = "$dir/data"
  node_id = "node$node"
$peers}
HCL
}

# start_node starts node $1 under timeout(1), the watchdog that stops it
# after MAX_RUN, in a session of its own so that it outlives this script.
start_node() {
  local dir
  dir=$(node_dir "$1")
  setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$dir/pid" \
    timeout --kill-after=10s "$MAX_RUN" "$VAULT" server -config="$dir/vault.hcl" \
    </dev/null >"$dir/vault.log" 2>&1 &
  for _ in $(seq 50); do [ -s "$dir/pid" ] && break; sleep 0.1; done
}

# unseal_node submits the unseal key to node $1 until it is accepted. A
# joining node rejects it as not initialised until its join reaches the
# leader.
unseal_node() {
  wait_for 60 vault_at "$1" operator unseal "$(cat "$CLUSTER_DIR/unseal-key")" >/dev/null ||
    die "node$1 did not accept the unseal key; see $(node_dir "$1")/vault.log"
}

cmd_start() {
  for node in "${NODES[@]}"; do
    node_pid "$node" >/dev/null && die "node$node is already running; run '$0 stop' first"
  done
  if [ -e "$CLUSTER_DIR" ]; then
    [ -f "$CLUSTER_DIR/$MARKER" ] || die "$CLUSTER_DIR exists and was not created by this script"
    rm -rf "$CLUSTER_DIR"
  fi
  for node in "${NODES[@]}"; do
    for port in $(api_port "$node") $(($(api_port "$node") + 1)); do
      port_free "$port" || die "port $port on 127.0.0.1 is in use; set NOVENTIQ_CLUSTER_PORT"
    done
  done

  VAULT=${VAULT_BIN:-$(scripts/vault.sh)}
  echo "==> building the plugin $PLUGIN_VERSION"
  local sha256
  sha256=$(scripts/build.sh)

  mkdir -p "$CLUSTER_DIR"
  touch "$CLUSTER_DIR/$MARKER"
  chmod 700 "$CLUSTER_DIR"

  echo "==> starting three nodes (each stops by itself after $MAX_RUN)"
  for node in "${NODES[@]}"; do
    local dir
    dir=$(node_dir "$node")
    mkdir -p "$dir/data" "$dir/plugins"
    # Every node needs the same binary: the catalog checks its SHA-256.
    cp "$BUILD_DIR/plugins/$PLUGIN_NAME" "$dir/plugins/"
    [ "$(sha256sum "$dir/plugins/$PLUGIN_NAME" | cut -d' ' -f1)" = "$sha256" ] ||
      die "the plugin copied to node$node does not have SHA-256 $sha256"
    write_config "$node"
    started=1
    start_node "$node"
  done
  for node in "${NODES[@]}"; do
    wait_for 60 responds "$node" || die "node$node does not respond; see $(node_dir "$node")/vault.log"
  done

  echo "==> initialising with one key share and unsealing"
  (
    umask 077
    vault_at 1 operator init -key-shares=1 -key-threshold=1 -format=json >"$CLUSTER_DIR/init.json"
    sed -n '/"unseal_keys_b64"/{n;s/.*"\([^"]*\)".*/\1/p;}' "$CLUSTER_DIR/init.json" >"$CLUSTER_DIR/unseal-key"
    sed -n 's/.*"root_token": "\([^"]*\)".*/\1/p' "$CLUSTER_DIR/init.json" >"$CLUSTER_DIR/root-token"
  ) || die "initialising node1 failed; see $(node_dir 1)/vault.log"
  [ -s "$CLUSTER_DIR/unseal-key" ] && [ -s "$CLUSTER_DIR/root-token" ] ||
    die "could not read the unseal key and root token from $CLUSTER_DIR/init.json"
  unseal_node 1
  wait_for 60 ha_mode_is 1 active || die "node1 did not become active"
  for node in "${NODES[@]:1}"; do
    unseal_node "$node"
    wait_for 60 ha_mode_is "$node" standby || die "node$node did not become a standby"
  done
  echo "==> waiting until all three nodes are Raft voters"
  wait_for 90 voters_are 3 >/dev/null || die "not all nodes became voters"

  echo "==> registering the plugin once and mounting it at noventiq/"
  vault_at 1 plugin register -sha256="$sha256" -version="$PLUGIN_VERSION" secret "$PLUGIN_NAME"
  vault_at 1 secrets enable -path=noventiq -plugin-version="$PLUGIN_VERSION" "$PLUGIN_NAME"

  cat >"$CLUSTER_DIR/env" <<ENV
export VAULT_ADDR=$(api_addr 1)
export VAULT_TOKEN=\$(cat "$CLUSTER_DIR/root-token")
ENV
  echo
  for node in "${NODES[@]}"; do
    echo "node$node  $(api_addr "$node")  cluster port $(($(api_port "$node") + 1))  log $(node_dir "$node")/vault.log"
  done
  echo "root token: $CLUSTER_DIR/root-token   unseal key: $CLUSTER_DIR/unseal-key"
  echo "use it:     source $CLUSTER_DIR/env"
  echo "stop it:    ${NOVENTIQ_CLUSTER_DIR:+NOVENTIQ_CLUSTER_DIR=$CLUSTER_DIR }$0 stop"
}

cmd_status() {
  [ -f "$CLUSTER_DIR/$MARKER" ] || die "no cluster in $CLUSTER_DIR; run '$0 start'"
  VAULT=${VAULT_BIN:-$(scripts/vault.sh)}
  local healthy=1 pid state
  for node in "${NODES[@]}"; do
    if ! pid=$(node_pid "$node"); then
      echo "node$node  $(api_addr "$node")  stopped"
      healthy=0
      continue
    fi
    state=$(vault_at "$node" status 2>/dev/null | sed -n 's/^HA Mode *//p')
    if vault_at "$node" status >/dev/null 2>&1; then
      echo "node$node  $(api_addr "$node")  watchdog pid $pid  unsealed  ${state:-unknown}"
    else
      echo "node$node  $(api_addr "$node")  watchdog pid $pid  sealed or not responding"
      healthy=0
    fi
  done
  for node in "${NODES[@]}"; do
    if vault_at "$node" status >/dev/null 2>&1; then
      echo
      vault_at "$node" operator raft list-peers
      break
    fi
  done
  [ "$healthy" = 1 ]
}

cmd_stop() {
  [ -e "$CLUSTER_DIR" ] || { echo "no cluster in $CLUSTER_DIR"; return 0; }
  [ -f "$CLUSTER_DIR/$MARKER" ] || die "$CLUSTER_DIR was not created by this script; not touching it"
  local pids=() pid
  for node in "${NODES[@]}"; do
    # The watchdog passes SIGTERM on to Vault, which stops the plugin.
    if pid=$(node_pid "$node"); then
      kill -TERM "$pid" 2>/dev/null || true
      pids+=("$pid")
    fi
  done
  for pid in "${pids[@]}"; do
    for _ in $(seq 60); do running "$pid" || break; sleep 0.5; done
    if running "$pid"; then
      echo "process $pid did not stop within 30s; killing it" >&2
      kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    fi
  done
  rm -rf "$CLUSTER_DIR"
  echo "stopped ${#pids[@]} node(s) and deleted $CLUSTER_DIR"
}

case "${1:-}" in
  start) cmd_start ;;
  status) cmd_status ;;
  stop) cmd_stop ;;
  *)
    echo "usage: $0 start|status|stop" >&2
    exit 2
    ;;
esac
