#!/bin/sh
# test/unit/run.sh
#	Runs every layer of the consensus core's tests and ends with one line
#	"N passed, M failed" that sums them.  Each step prints its own
#	"N passed, M failed" line, which this script adds up; a step that ends
#	without one (a crash) counts as one failure.
#
#	Environment: SIM_SEEDS, SIM_SAN_SEEDS, FUZZ_SECONDS, CLANG.

cd "$(dirname "$0")" || exit 2
total_pass=0
total_fail=0

step()
{
	name=$1
	shift
	echo "== $name"
	out=$(mktemp)
	"$@" >"$out" 2>&1
	rc=$?
	# show failures and the tally, not thousands of passing lines
	grep -v '^ok ' "$out" | tail -n 40
	line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$out" | tail -n 1)
	rm -f "$out"
	if [ -n "$line" ]; then
		p=$(echo "$line" | sed -E 's/^([0-9]+) passed.*/\1/')
		f=$(echo "$line" | sed -E 's/^[0-9]+ passed, ([0-9]+) failed.*/\1/')
	elif [ $rc -eq 0 ]; then
		p=1; f=0
	else
		p=0; f=1
	fi
	if [ $rc -ne 0 ] && [ "$f" -eq 0 ]; then
		f=1
	fi
	total_pass=$((total_pass + p))
	total_fail=$((total_fail + f))
}

step "unit tests" build/unit_tests
step "unit tests (ASan+UBSan)" build-san/unit_tests
if [ -f raftsim.c ]; then
	step "simulator, $SIM_SEEDS seeds" build/raftsim --seeds "$SIM_SEEDS" --first-seed 1
	step "simulator (ASan+UBSan), $SIM_SAN_SEEDS seeds" \
		build-san/raftsim --seeds "$SIM_SAN_SEEDS" --first-seed 100001
fi
if [ -f fuzz_codec.c ]; then
	if command -v "${CLANG:-clang}" >/dev/null 2>&1; then
		if make -s build/fuzz_codec >/dev/null; then
			mkdir -p build/fuzz-corpus
			step "codec fuzzer, ${FUZZ_SECONDS}s" build/fuzz_codec \
				-max_total_time="$FUZZ_SECONDS" -print_final_stats=0 \
				build/fuzz-corpus fuzz-seeds
		else
			echo "== codec fuzzer: build failed"
			total_fail=$((total_fail + 1))
		fi
	else
		echo "== codec fuzzer: skipped, clang not installed"
	fi
fi
echo "$total_pass passed, $total_fail failed"
[ "$total_fail" -eq 0 ]
