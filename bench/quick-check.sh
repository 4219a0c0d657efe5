#!/bin/sh
# quick-check.sh DRIVER - the ctest "bench_quick" check: runs a few short
# cells of the C driver (counter and map workloads, 1 and 2 threads) and
# fails unless every line has the protocol's format and says "ok".
# Speed is not judged here; exactness and the output format are.
#
# quick-check.sh --store STORE_BENCH - the "store_bench_quick" check: each
# store-bench implementation on both workloads with 2 processes x 2
# threads (skipped implementations say so), and the export with few keys.
set -u
secs=${SECONDS_PER_CELL:-0.05}
status=0

if [ "${1:-}" = --store ]; then
    sb=${2:?usage: quick-check.sh --store path/to/store-bench}
    "$sb" --list | while IFS="$(printf '\t')" read -r impl _ st; do
        if [ "$st" != ok ]; then
            echo "skip $impl: $st"
            continue
        fi
        for wl in hot keys1024; do
            line=$("$sb" --impl "$impl" --workload "$wl" --procs 2 \
                --threads 2 --seconds "$secs" --rep 1)
            rc=$?
            # impl,workload,procs,threads,rep,seconds,ops,mops,check,extra
            if [ $rc -ne 0 ] || ! printf '%s\n' "$line" | grep -Eq \
                "^$impl,$wl,2,2,1,[0-9.]+,[1-9][0-9]*,[0-9.]+,ok,"; then
                echo "FAIL ($rc) $impl $wl: '$line'"
                exit 1
            fi
            echo "$line"
        done
    done || status=1
    "$sb" --export --keys 2000 >/dev/null
    rc=$?
    if [ $rc -eq 77 ]; then
        echo "skip export (tally_store not built)"
    elif [ $rc -ne 0 ]; then
        echo "FAIL: store-bench --export exited $rc"
        status=1
    fi
    exit $status
fi

driver=${1:?usage: quick-check.sh path/to/tally-bench}
if [ ! -x "$driver" ]; then
    echo "quick-check: $driver is not an executable" >&2
    exit 1
fi

cell() { # impl workload threads [keys]
    keys=""
    [ $# -ge 4 ] && keys="--keys $4"
    # shellcheck disable=SC2086 # $keys is empty or two words
    line=$("$driver" --impl "$1" --workload "$2" --threads "$3" \
        --seconds "$secs" --rep 1 $keys)
    rc=$?
    if [ $rc -eq 77 ]; then
        echo "skip $1 $2"
        return 0
    fi
    # impl,workload,threads,rep,seconds,ops,mops,check,extra
    if ! printf '%s\n' "$line" | grep -Eq \
        "^$1,$2,$3,1,[0-9]+\.[0-9]+,[0-9]+,[0-9]+\.[0-9]+,ok,[^,]*$"; then
        echo "FAIL ($rc) $1 $2 $3: '$line'"
        status=1
        return 0
    fi
    if [ $rc -ne 0 ]; then
        echo "FAIL: exit $rc: $line"
        status=1
        return 0
    fi
    echo "$line"
}

for t in 1 2; do
    for impl in tally_counter tally_adder c_atomic c_mutex percpu_cell \
                thread_cell_store; do
        cell $impl counter $t
    done
    for impl in tally_map tally_map_handle seed_mutex_map urcu_lfht; do
        cell $impl hot $t
        cell $impl uniform1k $t
    done
    for impl in ref_plain_table ref_xadd_table ref_inline_table; do
        cell $impl hot $t
        cell $impl uniform1k $t
        cell $impl mixed $t
        cell $impl zipf1m $t 65536
    done
    cell tally_map zipf1m $t 65536
    cell tally_map mixed $t
    cell tally_map insert $t
    cell tally_map iterate $t
done
cell tally_map memory 1 65536

# The usage errors must stay errors.
if "$driver" --impl no_such_impl --workload counter >/dev/null 2>&1; then
    echo "FAIL: an unknown impl was accepted"
    status=1
fi
exit $status
