# Step 7: a dynamic glibc program (Debian's bash, run by the harness as
# `/usr/bin/bash /t/glibc.sh /out` with the host's /usr bound at /usr) running coreutils in a
# loop: ld.so, libc, the UTF-8 locale (incl. the shared gconv cache mapping) and rseq in bash
# and its coreutils children. Bash keeps its own bookkeeping (a counter, an indexed and an
# associative array, a log file it appends to with `date` stamps and sha256 sums) and checks it
# on every round; after the ready file it waits for SIGUSR2 (trap) either with a sleeping
# coreutils child (mode `wait`, default) or still looping (mode `busy`: the checkpoint then
# catches pipes and SIGCHLD in flight), then checks everything again, runs more coreutils and
# writes the result. The protocol is survival.h's, done in shell.
set -u
out=${1:-/out}
mode=${2:-wait} # wait | busy (see below)
name=glibc
log=$out/$name.log

result() { # atomically, as survival.h does
    printf '%s\n' "$1" >"$out/.$name.result.tmp" && mv -f "$out/.$name.result.tmp" "$out/$name.result"
}
fail() {
    echo "glibc.sh: FAIL: $*" >&2
    result "FAIL: $*"
    exit 1
}

go=0
trap 'go=1' USR2
export LC_ALL=C.UTF-8
word='grüße✓'
[ "${#word}" -eq 6 ] || fail "bash counts ${#word} characters in '$word' under $LC_ALL (locale not loaded?)"
chars=$(printf '%s' "$word" | wc -m) || fail "wc -m failed"
[ "$chars" -eq 6 ] || fail "wc -m counts $chars characters under $LC_ALL"
want_sum=$(printf '%s' "$word" | sha256sum | cut -c1-16) || fail "sha256sum failed"
[ ${#want_sum} -eq 16 ] || fail "sha256sum printed '$want_sum'"

count=0
declare -a seq_seen=()
declare -A stamp=()
: >"$log" || fail "cannot write $log"

step() {
    count=$((count + 1))
    local now sum
    now=$(date +%s%N) || fail "date failed at round $count"
    sum=$(printf '%s' "$word" | sha256sum | cut -c1-16) || fail "sha256sum failed at round $count"
    echo "$count $now $sum" >>"$log"
    seq_seen+=("$count")
    stamp[$count]=$now
}

check() {
    local lines last sums sorted
    lines=$(wc -l <"$log") || fail "wc failed"
    [ "$lines" -eq "$count" ] || fail "$1: the log has $lines lines, the counter says $count"
    [ "${#seq_seen[@]}" -eq "$count" ] || fail "$1: the array has ${#seq_seen[@]} entries, the counter says $count"
    [ "${seq_seen[$((count - 1))]}" -eq "$count" ] || fail "$1: last array entry ${seq_seen[$((count - 1))]}, counter $count"
    [ "${#stamp[@]}" -eq "$count" ] || fail "$1: the map has ${#stamp[@]} entries, the counter says $count"
    last=$(tail -n 1 "$log") || fail "tail failed"
    [ "$last" = "$count ${stamp[$count]} $want_sum" ] || fail "$1: last log line '$last', expected '$count ${stamp[$count]} $want_sum'"
    sums=$(cut -d' ' -f3 "$log" | sort -u) || fail "cut|sort failed"
    [ "$sums" = "$want_sum" ] || fail "$1: sha256 sums in the log differ: $(echo $sums)"
    sorted=$(cut -d' ' -f1 "$log" | sort -n -c 2>&1 && cut -d' ' -f2 "$log" | sort -n -c 2>&1) ||
        fail "$1: counter or date went backwards in the log: $sorted"
}

for _ in 1 2 3 4 5; do
    step
done
check "before ready"
# The ready file is written by a builtin (one write of "pid\n"; the harness waits for the
# newline), so no child of ours is coming or going when the harness looks at the tree.
ready() {
    printf '%s\n' "$$" >"$out/$name.ready" || fail "ready file"
}

if [ "$mode" = busy ]; then
    ready
    # keep running coreutils until SIGUSR2 (the checkpoint lands in bash or in one of them,
    # with pipes of command substitutions open and SIGCHLD coming and going)
    while [ "$go" = 0 ]; do
        step
        check "round $count"
        sleep 0.05
    done
else
    # wait for SIGUSR2 with a coreutils child asleep: the checkpoint catches bash in wait4 and
    # sleep in clock_nanosleep, a stable tree of two dynamic glibc processes
    sleep 100000 &
    sleeper=$!
    ready
    while [ "$go" = 0 ]; do
        wait "$sleeper" # a trapped signal interrupts it
        [ "$go" = 1 ] || fail "wait for the sleeping child returned without SIGUSR2"
    done
    kill "$sleeper" || fail "the sleeping child $sleeper is gone after restore"
    wait "$sleeper"
    st=$?
    [ "$st" -eq 143 ] || fail "the sleeping child exited $st, expected 143 (SIGTERM)"
fi

check "after restore"
end=$(date +%s%N) || fail "date failed after restore"
gap=$(((end - ${stamp[$count]}) / 1000000))
[ "$gap" -ge 0 ] && [ "$gap" -lt 600000 ] || fail "date moved by $gap ms since the last round"
step
check "a round after restore"
top=$(seq 1 2000 | sort -rn | head -n 1) || fail "seq|sort|head failed"
[ "$top" = 2000 ] || fail "seq|sort|head gave '$top'"
upper=$(printf '%s' "$word" | tr '[:lower:]' '[:upper:]') || fail "tr failed"
[ "$upper" = "GRÜSSE✓" ] || [ "$upper" = "GRüSSE✓" ] || [ "$upper" = "GRÜßE✓" ] || [ "$upper" = "GRüßE✓" ] || fail "tr gave '$upper'"
expr=$(seq 1 "$count" | paste -sd+) || fail "seq|paste failed"
[ $((expr)) -eq $((count * (count + 1) / 2)) ] || fail "seq|paste gave '$expr'"
echo "glibc.sh: $count rounds" >&2
result PASS
exit 0
