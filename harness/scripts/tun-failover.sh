#!/bin/bash
# Failover over the TUN bridge (kernel TCP end to end, issue 12): `astral
# connect --streams 2 ... echo` in namespace A to `astral listen --serve
# echo=echo` in B over two paths (default 50 ms, 20 Mbit/s each), stdin
# paced at 1 MB/s for 16 s (byte i is i mod 251); about 8 s in, the path
# that carries the session (the stream whose `ctl streams` row has a
# session) goes `blackhole drop`. Prints the blackhole time, `ctl streams`
# 3 s later and, at the end, the bytes echoed back, whether every byte
# matched its offset's pattern, and the three longest gaps between reads
# of the echo (the first starts at the blackhole: "data resumed" = its
# start + its length - the blackhole time). Needs root (wan-netns.sh).
#   sudo -E harness/scripts/tun-failover.sh            # one run
#   TUN_FO_VERBOSE=-vv sudo -E harness/scripts/tun-failover.sh   # logs in $D
# Environment: WAN_PATH1/WAN_PATH2 (astral-wan tun flags), TUN_FO_DIR (work
# directory, default /tmp/tun-failover), ASTRAL (default target/release/astral),
# ASTRAL_WAN (default target/release/astral-wan). Namespaces awf-a/awf-b,
# subnets 10.207.i (WAN_PREFIX/WAN_NET override).
set -u
cd "$(dirname "$0")/../.."
export WAN_PREFIX="${WAN_PREFIX:-awf}" WAN_NET="${WAN_NET:-10.207}"
export ASTRAL_WAN="${ASTRAL_WAN:-target/release/astral-wan}"
export WAN_PATH1="${WAN_PATH1:---rtt 50ms --rate 20mbit}" WAN_PATH2="${WAN_PATH2:---rtt 50ms --rate 20mbit}"
A="${ASTRAL:-target/release/astral}"; D="${TUN_FO_DIR:-/tmp/tun-failover}"; V="${TUN_FO_VERBOSE:-}"
mkdir -p "$D"
cat > "$D/gen.py" <<'PY'
import sys, time
rate, chunk, dur = 1_000_000, 16384, float(sys.argv[1])
pat = bytes(i % 251 for i in range(251 * 70))
out, off, n, t0 = sys.stdout.buffer, 0, 0, time.monotonic()
while time.monotonic() - t0 < dur:
    s = off % 251
    out.write((pat[s:] + pat)[:chunk]); out.flush(); off += chunk; n += 1
    d = t0 + n * chunk / rate - time.monotonic()
    if d > 0: time.sleep(d)
sys.stderr.write(f"gen wrote {off}\n")
PY
cat > "$D/reader.py" <<'PY'
import os, time
off, ok, last, gaps = 0, True, None, []
while True:
    b = os.read(0, 65536); now = time.time()
    if not b: break
    if last is not None: gaps.append((now - last, last))
    last = now
    ok = ok and all(x == (off + i) % 251 for i, x in enumerate(b))
    off += len(b)
print(f"read {off} B pattern_ok={ok}")
for g, at in sorted(gaps, reverse=True)[:3]: print(f"gap {g*1000:.1f} ms starting at {at:.3f}")
PY
harness/scripts/wan-netns.sh up >/dev/null || exit 1
LP=
trap '[ -n "$LP" ] && kill $LP 2>/dev/null; harness/scripts/wan-netns.sh down >/dev/null 2>&1' EXIT
rm -f "$D/c.sock"
[ -f "$D/a.key" ] || { $A keygen -o "$D/a.key" >/dev/null; $A keygen -o "$D/b.key" >/dev/null; }
IDA=$($A id "$D/a.key")
harness/scripts/wan-netns.sh exec b $A $V listen -k "$D/a.key" -b 0.0.0.0:4000 --serve echo=echo 2>"$D/listen.log" &
LP=$!
sleep 1
(harness/scripts/wan-netns.sh exec a bash -c "python3 $D/gen.py 16 | $A $V connect -k $D/b.key --streams 2 --control $D/c.sock $IDA@$WAN_NET.1.2:4000 $IDA@$WAN_NET.2.2:4000 echo | python3 $D/reader.py" >"$D/reader.out" 2>"$D/connect.log") &
CP=$!
sleep 8
S=$($A ctl --control "$D/c.sock" --json streams)
P=$(python3 -c "import json,sys; r=[s for s in json.loads(sys.argv[1]) if s['sessions']>0]; print(r[0]['remote'].split('.')[2] if r else 1)" "$S")
T=$(date +%s.%N); harness/scripts/wan-netns.sh ctl "$P" "blackhole drop" >/dev/null
echo "blackholed path $P at $T"
sleep 3; $A ctl --control "$D/c.sock" streams
wait $CP
grep -a "gen wrote" "$D/connect.log"
cat "$D/reader.out"
