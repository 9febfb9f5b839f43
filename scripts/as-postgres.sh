#!/bin/sh
# scripts/as-postgres.sh TARGET [MAKE-ARGUMENTS...]
#
#	Runs "make TARGET" somewhere PostgreSQL servers can run.  PostgreSQL
#	refuses to run as root, and a clone under /root (mode 700) cannot even
#	be read by another user, so as root this copies the tree into a fresh
#	directory under /tmp owned by the postgres user, runs the target there
#	with runuser, and deletes the copy on exit.  As any other user it runs
#	the target in place.
#
#	The exit status is make's.  When make fails, the evidence is printed
#	before the copy goes away: regression.diffs, pg_regress's server log
#	(log/postmaster.log) and the TAP tests' logs (tmp_check/log: regress_log_*
#	and one log per server).
#
#	Environment: MAKE (the make to run), KEEP_TMP=1 keeps the copy.

set -u

if [ $# -lt 1 ]; then
	echo "usage: $0 TARGET [MAKE-ARGUMENTS...]" >&2
	exit 2
fi
target=$1
shift
MAKE=${MAKE:-make}
top=$(cd "$(dirname "$0")/.." && pwd) || exit 2

# print what a failed run left behind in directory $1
show_failure()
{
	dir=$1
	if [ -s "$dir/regression.diffs" ]; then
		echo "======== regression.diffs"
		cat "$dir/regression.diffs"
	fi
	for f in "$dir"/log/* "$dir"/tmp_check/log/*; do
		[ -f "$f" ] || continue
		echo "======== ${f#"$dir"/} (last 200 lines)"
		tail -n 200 "$f"
	done
}

if [ "$(id -u)" != 0 ]; then
	"$MAKE" -C "$top" "$target" "$@"
	rc=$?
	[ $rc -eq 0 ] || show_failure "$top"
	exit $rc
fi

if ! id -u postgres >/dev/null 2>&1; then
	echo "$0: running as root and there is no postgres user to run PostgreSQL" >&2
	echo "$0: (\"make deps\" installs postgresql-15, which creates it)" >&2
	exit 1
fi

tmp=$(mktemp -d /tmp/raftpg-as-postgres.XXXXXX) || exit 1
# shellcheck disable=SC2317  # called by the EXIT trap
cleanup()
{
	if [ -n "${KEEP_TMP:-}" ]; then
		echo "$0: kept $tmp"
	else
		rm -rf "$tmp"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# the sources and the build, not the history nor earlier test output
(cd "$top" && tar -cf - --exclude=./.git --exclude=./tmp_check \
	--exclude=./results --exclude=./log --exclude=./regression.diffs \
	--exclude=./regression.out --exclude='./test/unit/build*' .) |
	(cd "$tmp" && tar -xf -) || exit 1
chown -R postgres: "$tmp" || exit 1

echo "$0: running \"make $target\" as postgres in $tmp"
# Keep the caller's make flags and variables (PROVE_FLAGS=-v, ...) but not
# its jobserver, whose descriptors do not reach the other user's make.
# TMPDIR inside the copy: the socket directories that pg_regress and the
# TAP tests create go away with it, even when a failed test leaves them.
makeflags=$(printf '%s\n' "${MAKEFLAGS:-}" |
	sed -e 's/ *--jobserver-[a-z]*=[^ ]*//g')
(cd "$tmp" && runuser -u postgres -- \
	env -u MFLAGS -u MAKELEVEL MAKEFLAGS="$makeflags" HOME="$tmp" \
	TMPDIR="$tmp" "$MAKE" "$target" "$@")
rc=$?
[ $rc -eq 0 ] || show_failure "$tmp"
exit $rc
