#!/bin/sh
# scripts/deps.sh
#
#	Checks that everything raftpg needs to build and test is installed:
#	the PostgreSQL 15 server and its development files (with the GSSAPI
#	headers they include), IPC::Run and prove
#	for the TAP tests, make, gcc, and clang with its libFuzzer runtime for
#	the codec fuzzer.  As root it installs what is missing with apt-get;
#	as another user it prints the command to run and fails.  Silent when
#	nothing is missing.

set -u

PG_MAJOR=15
PG_BINDIR=/usr/lib/postgresql/$PG_MAJOR/bin

have()
{
	command -v "$1" >/dev/null 2>&1
}

# Can clang build a libFuzzer target?  Debian ships the runtime in
# libclang-rt-N-dev, which clang only recommends.
fuzzer_links()
{
	d=$(mktemp -d) || return 1
	cat >"$d/f.c" <<'EOF'
#include <stddef.h>
#include <stdint.h>
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	(void) data;
	(void) size;
	return 0;
}
EOF
	clang -fsanitize=fuzzer,address,undefined -o "$d/f" "$d/f.c" \
		>/dev/null 2>&1
	rc=$?
	rm -rf "$d"
	return $rc
}

# sets $missing to the packages that would supply what is absent
check()
{
	missing=
	[ -x "$PG_BINDIR/postgres" ] || missing="$missing postgresql-$PG_MAJOR"
	pgxs=$("$PG_BINDIR/pg_config" --pgxs 2>/dev/null)
	incdir=$("$PG_BINDIR/pg_config" --includedir-server 2>/dev/null)
	if [ -z "$pgxs" ] || [ ! -f "$pgxs" ] || [ ! -f "$incdir/postgres.h" ]; then
		missing="$missing postgresql-server-dev-$PG_MAJOR"
	fi
	# the server's libpq/libpq.h (the message stream, transport.c) includes
	# the GSSAPI header when the server was built with GSSAPI, as Debian's is
	[ -f /usr/include/gssapi/gssapi.h ] || missing="$missing libkrb5-dev"
	have perl && perl -MIPC::Run -e1 2>/dev/null ||
		missing="$missing libipc-run-perl"
	have prove || missing="$missing perl"
	have make || missing="$missing make"
	have gcc || missing="$missing gcc"
	if ! have clang; then
		missing="$missing clang"
	elif ! fuzzer_links; then
		major=$(clang -dumpversion | cut -d. -f1)
		missing="$missing libclang-rt-$major-dev"
	fi
	missing=${missing# }
}

check
[ -z "$missing" ] && exit 0

if [ "$(id -u)" != 0 ]; then
	echo "raftpg: missing packages: $missing" >&2
	echo "raftpg: install them with:" >&2
	echo "  sudo apt-get update && sudo apt-get install -y $missing" >&2
	exit 1
fi

# Two rounds: clang's fuzzer runtime can only be checked once clang is there.
for _ in 1 2; do
	echo "raftpg: installing $missing"
	apt-get update || exit 1
	# $missing is a list of package names: split it
	# shellcheck disable=SC2086
	DEBIAN_FRONTEND=noninteractive apt-get install -y $missing || exit 1
	check
	[ -z "$missing" ] && exit 0
done

echo "raftpg: still missing after apt-get install: $missing" >&2
exit 1
