#!/usr/bin/env bash
# Two network namespaces joined by emulated WAN paths (root).
#
#   wan-netns.sh up        create namespaces A and B and the paths between them
#   wan-netns.sh down      stop the bridges, delete the namespaces
#   wan-netns.sh status    show the namespaces' addresses and each path's parameters
#   wan-netns.sh ctl N CMD...   send commands to path N's bridge ("blackhole on", "delay 80ms")
#   wan-netns.sh exec a|b CMD...  run a command inside namespace A or B
#
# Each path i is its own pair of TUN devices, one in each namespace, joined
# by an `astral-wan tun` process that delays, paces, queues and drops the
# packets between them; A has address $WAN_NET.i.1, B has $WAN_NET.i.2
# (point-to-point), so a host in A reaches B over path i by dialing
# $WAN_NET.i.2. The kernels' own TCP runs end to end over the emulated path.
#
# Settings (environment):
#   WAN_PREFIX   name prefix (default aw): namespaces $P-a, $P-b; devices $Pa1, $Pb1, ...
#   WAN_NET      first two octets of the path subnets (default 10.201)
#   WAN_PATHS    number of paths (default 2)
#   WAN_PATH1, WAN_PATH2, ...   `astral-wan tun` flags for path i,
#                e.g. "--rtt 100ms --rate 100mbit --queue 1mb" (default: none = transparent)
#   WAN_MTU      MTU of every path (default 1500)
#   WAN_CC       TCP congestion control in both namespaces (e.g. cubic, bbr;
#                default: what a new namespace inherits from the host)
#   ASTRAL_WAN   the astral-wan binary (default: target/release/astral-wan, built if missing)
#   WAN_RUN      directory for pid files, logs and control sockets (default /run/astral-wan-$P)
#
# Nothing leaves the two namespaces: they have no route but their paths.
set -euo pipefail

P="${WAN_PREFIX:-aw}"
NET="${WAN_NET:-10.201}"
PATHS="${WAN_PATHS:-2}"
MTU="${WAN_MTU:-1500}"
RUN="${WAN_RUN:-/run/astral-wan-$P}"
NS_A="$P-a"
NS_B="$P-b"
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"

die() { echo "wan-netns: $*" >&2; exit 1; }

bin() {
  if [ -n "${ASTRAL_WAN:-}" ]; then
    echo "$ASTRAL_WAN"
    return
  fi
  local b="$root/target/release/astral-wan"
  if [ ! -x "$b" ]; then
    echo "wan-netns: building astral-wan (release)" >&2
    (cd "$root" && cargo build --release -p astral-harness --bin astral-wan >&2)
  fi
  echo "$b"
}

check() {
  [ "$(id -u)" = 0 ] || die "needs root (ip netns, TUN devices)"
  [ -c /dev/net/tun ] || die "no /dev/net/tun"
  command -v ip >/dev/null || die "needs iproute2 (ip)"
  [ "${#P}" -le 12 ] || die "WAN_PREFIX too long (device names are at most 15 characters)"
}

wait_for_link() {
  local dev="$1" i
  for i in $(seq 1 100); do
    ip link show dev "$dev" >/dev/null 2>&1 && return 0
    sleep 0.05
  done
  return 1
}

up() {
  check
  local b
  b="$(bin)"
  if ip netns list | grep -qw -- "$NS_A"; then
    die "namespace $NS_A exists already (run: WAN_PREFIX=$P $0 down)"
  fi
  mkdir -p "$RUN"
  ip netns add "$NS_A"
  ip netns add "$NS_B"
  ip -n "$NS_A" link set lo up
  ip -n "$NS_B" link set lo up
  if [ -n "${WAN_CC:-}" ]; then
    # A namespace may only pick an algorithm the host allows.
    for ns in "$NS_A" "$NS_B"; do
      ip netns exec "$ns" sysctl -qw "net.ipv4.tcp_congestion_control=$WAN_CC" ||
        die "WAN_CC=$WAN_CC refused; it must be in the host's net.ipv4.tcp_allowed_congestion_control ($(sysctl -n net.ipv4.tcp_allowed_congestion_control)); as root: sysctl -w net.ipv4.tcp_allowed_congestion_control=\"\$(sysctl -n net.ipv4.tcp_allowed_congestion_control) $WAN_CC\""
    done
  fi
  for i in $(seq 1 "$PATHS"); do
    local da="${P}a$i" db="${P}b$i" var="WAN_PATH$i"
    local flags="${!var:-}"
    # shellcheck disable=SC2086 # flags are words on purpose
    setsid "$b" tun --dev-a "$da" --dev-b "$db" --mtu "$MTU" \
      --control "$RUN/path$i.sock" --seed "$i" $flags \
      >"$RUN/path$i.log" 2>&1 </dev/null &
    echo $! >"$RUN/path$i.pid"
    wait_for_link "$da" && wait_for_link "$db" \
      || { cat "$RUN/path$i.log" >&2; down; die "bridge for path $i did not start"; }
    ip link set "$da" netns "$NS_A"
    ip link set "$db" netns "$NS_B"
    ip -n "$NS_A" addr add "$NET.$i.1" peer "$NET.$i.2" dev "$da"
    ip -n "$NS_B" addr add "$NET.$i.2" peer "$NET.$i.1" dev "$db"
    # No IPv6 autoconfiguration chatter on the paths (it would show in the
    # bridges' counters).
    ip netns exec "$NS_A" sysctl -qw "net.ipv6.conf.$da.disable_ipv6=1" || true
    ip netns exec "$NS_B" sysctl -qw "net.ipv6.conf.$db.disable_ipv6=1" || true
    ip -n "$NS_A" link set "$da" mtu "$MTU" up
    ip -n "$NS_B" link set "$db" mtu "$MTU" up
    echo "path $i: $NS_A $NET.$i.1 <-> $NS_B $NET.$i.2 ($da/$db) ${flags:-transparent}"
  done
}

down() {
  for pidfile in "$RUN"/path*.pid; do
    [ -e "$pidfile" ] || continue
    local pid
    pid="$(cat "$pidfile")"
    # Only our bridge: check the process is astral-wan before signalling it.
    if [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "astral-wan tun"; then
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 40); do [ -e "/proc/$pid" ] || break; sleep 0.05; done
    fi
    rm -f "$pidfile"
  done
  ip netns del "$NS_A" 2>/dev/null || true
  ip netns del "$NS_B" 2>/dev/null || true
  rm -rf "$RUN"
}

status() {
  for ns in "$NS_A" "$NS_B"; do
    echo "== $ns"
    ip -n "$ns" -brief addr 2>/dev/null || echo "(absent)"
  done
  for s in "$RUN"/path*.sock; do
    [ -e "$s" ] || continue
    echo "== $(basename "$s" .sock)"
    "$(bin)" ctl "$s" show stats
  done
}

cmd="${1:-}"
shift || true
case "$cmd" in
  up) up ;;
  down) down ;;
  status) status ;;
  ctl)
    n="${1:?path number}"; shift
    "$(bin)" ctl "$RUN/path$n.sock" "$@"
    ;;
  exec)
    side="${1:?a or b}"; shift
    case "$side" in
      a) exec ip netns exec "$NS_A" "$@" ;;
      b) exec ip netns exec "$NS_B" "$@" ;;
      *) die "exec a|b CMD..." ;;
    esac
    ;;
  *) sed -n '2,24p' "$0"; exit 2 ;;
esac
