#!/bin/bash
# test/bench/bench.sh -- "make bench"
#
#	Checks the dependencies (those of scripts/deps.sh, plus python3 and
#	gnuplot; as root it installs what is missing with apt-get), builds and
#	installs raftpg, then runs test/bench/bench.py, which starts every
#	server, measures, stops them and writes the report.  The EXIT trap is a
#	safety net: should bench.py die without stopping its servers, the ones
#	left in its work directory are stopped here.
#
#	Environment: MAKE, and the BENCH_* variables described in bench.py
#	(BENCH_QUICK=1 for a smoke run of under 3 minutes).

set -u

top=$(cd "$(dirname "$0")/../.." && pwd) || exit 2
MAKE=${MAKE:-make}
PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config
[ -x "$PG_CONFIG" ] || PG_CONFIG=pg_config

say()
{
	echo "bench: $*"
}

die()
{
	echo "bench: $*" >&2
	exit 1
}

# work from a directory the postgres user can enter
cd / || exit 1

"$top/scripts/deps.sh" || exit 1
missing=
command -v python3 >/dev/null 2>&1 || missing="$missing python3"
command -v gnuplot >/dev/null 2>&1 || missing="$missing gnuplot-nox"
if [ -n "$missing" ]; then
	if [ "$(id -u)" = 0 ]; then
		say "installing$missing"
		apt-get update || exit 1
		# shellcheck disable=SC2086  # a list of package names
		DEBIAN_FRONTEND=noninteractive apt-get install -y $missing || exit 1
	else
		echo "bench: missing packages:$missing" >&2
		echo "bench: install them with:" >&2
		echo "  sudo apt-get update && sudo apt-get install -y$missing" >&2
		exit 1
	fi
fi

say "building and installing raftpg"
"$MAKE" -C "$top" all >/dev/null || die "build failed (run make to see why)"
PG_CONFIG="$PG_CONFIG" "$MAKE" -C "$top" install-ext >/dev/null ||
	die "install failed"

state=$(mktemp /tmp/raftpg-bench-state.XXXXXX) || exit 1
bench_pid=

# shellcheck disable=SC2317  # called by the EXIT trap
cleanup()
{
	if [ -n "$bench_pid" ] && kill -0 "$bench_pid" 2>/dev/null; then
		kill -TERM "$bench_pid" 2>/dev/null
		wait "$bench_pid"
	fi
	work=$(cat "$state" 2>/dev/null)
	case $work in
		/*/raftpg-bench.*) ;;
		*) work= ;;
	esac
	if [ -n "$work" ] && [ -d "$work" ]; then
		bindir=$("$PG_CONFIG" --bindir)
		left=
		for pidfile in "$work"/*/postmaster.pid; do
			[ -f "$pidfile" ] || continue
			d=$(dirname "$pidfile")
			left=1
			if [ "$(id -u)" = 0 ]; then
				as_owner="runuser -u $(stat -c %U "$d") --"
			else
				as_owner=
			fi
			# pg_ctl status: 0 running, 3 a stale pid file
			$as_owner "$bindir/pg_ctl" -D "$d" status >/dev/null 2>&1 || continue
			say "stopping the server left in $d"
			$as_owner "$bindir/pg_ctl" -D "$d" -m immediate -w stop >/dev/null 2>&1
		done
		if [ -n "$left" ] && [ -z "${BENCH_KEEP:-}" ]; then
			rm -rf "$work"
		fi
	fi
	rm -f "$state"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# in the background, so that a signal to this shell runs the traps at once
BENCH_STATE=$state python3 "$top/test/bench/bench.py" &
bench_pid=$!
wait "$bench_pid"
rc=$?
bench_pid=
exit $rc
