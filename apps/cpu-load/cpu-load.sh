#!/bin/sh
# cpu-load: burns a set share of one CPU, the load the paper's experiments migrate
# (§4.2, Figure 9: apps moved away from nodes with high CPU use).
#
# usage: cpu-load.sh [SHARE_PERCENT] [PERIOD_MS]
#   SHARE_PERCENT share of one core to burn, 1..100 (default 50)
#   PERIOD_MS     duty-cycle period in milliseconds (default 100)
#
# A busy loop runs in a child; the parent stops and continues it with SIGSTOP/SIGCONT
# (kill -STOP/-CONT) so it runs SHARE_PERCENT of every period. POSIX sh only.
set -u

share="${1:-50}"
period_ms="${2:-100}"
case "$share$period_ms" in
    '' | *[!0-9]*)
        echo "cpu-load: SHARE_PERCENT and PERIOD_MS must be integers" >&2
        exit 2
        ;;
esac
[ "$share" -lt 1 ] && share=1
[ "$share" -gt 100 ] && share=100

# Seconds on and off per period, with millisecond resolution, computed in integers.
on_ms=$((period_ms * share / 100))
off_ms=$((period_ms - on_ms))
on_s=$(printf '%d.%03d' $((on_ms / 1000)) $((on_ms % 1000)))
off_s=$(printf '%d.%03d' $((off_ms / 1000)) $((off_ms % 1000)))

( while :; do :; done ) &
burner=$!

on_term() {
    kill -CONT "$burner" 2>/dev/null
    kill -TERM "$burner" 2>/dev/null
    exit 0
}
trap on_term TERM INT

if [ "$off_ms" -le 0 ]; then
    wait "$burner"
    exit 0
fi
while :; do
    sleep "$on_s"
    kill -STOP "$burner"
    sleep "$off_s"
    kill -CONT "$burner"
done
