#!/bin/sh
# counter: the stateful sample app used to check migrations (paper §4.2, Table 3).
#
# Increments a counter every INTERVAL seconds and persists it in
# $EDGECHAIN_STATE_DIR/count after every step. A migrated copy reads the file back, so it
# continues from where the origin stopped: never from zero, never backwards.
#
# usage: counter.sh [PAD_BYTES] [INTERVAL_S] [TAG] [REWRITE_KIB]
#   PAD_BYTES   size of an incompressible pad file kept in the state dir, created once, so
#               the state weighs like the paper's median CRIU checkpoint (15.2 MB); default 0
#   INTERVAL_S  seconds between increments (default 0.1: ten steps a second)
#   TAG         ignored; lets a test find this exact instance in the process table
#   REWRITE_KIB each step also overwrites this many KiB of the pad with random bytes, in
#               place, moving on through the pad (a state that keeps changing while a
#               pre-copy migration copies it: runtime/precopy.py); default 0
#
# POSIX sh only (dash on a host, busybox sh in the container image): no python needed.
#
# Crash safety: the count is written to a temporary file and renamed over the old one, so
# a freeze (SIGSTOP, cgroup freezer) or a SIGKILL at any instant leaves a whole value.
# Signals: TERM/INT persist and exit; USR1 is the runtime's cooperative checkpoint hook:
# persist, then touch $EDGECHAIN_CHECKPOINT_ACK so the runtime knows the state on disk is
# current (runtime/process.py). The runtime signals the whole process group. The sleep
# between steps ignores USR1 and the shell waits for it with `wait`, which a trapped
# signal interrupts at once: the trap runs without waiting for the interval. Every
# external command of the loop runs as a waited background job (`run`), its `wait`
# silenced: one the signal killed made the shell log "User defined signal 1", which
# pushed the "starting from" line out of a log's tail.
set -u

dir="${EDGECHAIN_STATE_DIR:?EDGECHAIN_STATE_DIR is not set}"
pad="${1:-0}"
interval="${2:-0.1}"
rewrite="${4:-0}"
ack="${EDGECHAIN_CHECKPOINT_ACK:-}"

count=0
if [ -f "$dir/count" ]; then
    read -r count < "$dir/count" || count=""
fi
case "$count" in
    '' | *[!0-9]*)
        echo "counter: corrupt state file $dir/count" >&2
        exit 2
        ;;
esac
echo "counter: starting from $count"

if [ "$pad" -gt 0 ] && [ ! -f "$dir/pad" ]; then
    head -c "$pad" /dev/urandom > "$dir/pad.tmp" && mv -f "$dir/pad.tmp" "$dir/pad"
fi

# Runs an external command of the loop as a background job and waits until it is gone.
# The runtime signals the whole process group, so a USR1 may end the command mid-way
# (the trap persists again meanwhile); the shell reports such a job as "User defined
# signal 1" on the standard error of the `wait` that reaps it, here /dev/null (300
# checkpoints in a row: 145 such lines with the commands in the foreground, none like
# this). A trap interrupts the `wait` while the job may still run: it is waited for
# again, else the next step's rename raced it for the same file ("mv: cannot stat").
run() {
    "$@" &
    job=$!
    until wait "$job" 2>/dev/null; do
        kill -0 "$job" 2>/dev/null || break
    done
}

# persist: the loop's write, through count.tmp.
persist() {
    echo "$count" > "$dir/count.tmp" && run mv -f "$dir/count.tmp" "$dir/count"
}

# persist_in_trap: the traps' write, through a file of their own (a trap may run while
# the loop's rename of count.tmp is on its way), with the rename in the foreground and
# deaf to USR1: a background job here would change `$!` under the loop, should the trap
# run between the loop's `cmd &` and its `job=$!`. The runtime sends the next USR1 only
# after this trap's acknowledgement, so none comes while the rename runs.
persist_in_trap() {
    echo "$count" > "$dir/count.trap.tmp" &&
        (trap '' USR1; exec mv -f "$dir/count.trap.tmp" "$dir/count")
}

on_term() {
    persist_in_trap
    exit 0
}

on_checkpoint() {
    persist_in_trap
    if [ -n "$ack" ]; then
        : > "$ack"
    fi
}

trap on_term TERM INT
trap on_checkpoint USR1
# Advertise the checkpoint hook to the runtime (it travels with the state).
if [ -n "$ack" ]; then
    : > "$dir/.checkpoint-hook"
fi

pad_kib=$((pad / 1024))
rewrite_slots=0
if [ "$rewrite" -gt 0 ] && [ "$pad_kib" -ge "$rewrite" ]; then
    rewrite_slots=$((pad_kib / rewrite))
fi

while :; do
    count=$((count + 1))
    persist
    if [ "$rewrite_slots" -gt 0 ]; then
        run dd if=/dev/urandom of="$dir/pad" bs=1024 count="$rewrite" \
            seek=$(( (count % rewrite_slots) * rewrite )) conv=notrunc 2>/dev/null
    fi
    (trap '' USR1; exec sleep "$interval") &
    wait $! 2>/dev/null
done
