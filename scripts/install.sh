#!/bin/sh
# scripts/install.sh
#
#	"make install" for make test and make demo, which need the module
#	installed before they can start a server with it.  When the
#	installation directories are writable (root, or a PostgreSQL of one's
#	own), install.  When they are not, carry on if the installed copy is
#	exactly this build; otherwise print the command that installs it and
#	fail.
#
#	Environment: PG_CONFIG, MAKE.

set -u

PG_CONFIG=${PG_CONFIG:-pg_config}
MAKE=${MAKE:-make}
cd "$(dirname "$0")/.." || exit 2

libdir=$("$PG_CONFIG" --pkglibdir) || exit 1
extdir=$("$PG_CONFIG" --sharedir)/extension || exit 1

if [ -w "$libdir" ] && [ -w "$extdir" ]; then
	exec "$MAKE" install
fi

current=yes
cmp -s raftpg.so "$libdir/raftpg.so" 2>/dev/null || current=no
for f in raftpg.control sql/raftpg--*.sql; do
	cmp -s "$f" "$extdir/$(basename "$f")" 2>/dev/null || current=no
done

if [ "$current" = yes ]; then
	echo "raftpg: $libdir is not writable, but the installed raftpg is this build"
	exit 0
fi

echo "raftpg: installing needs write access to $libdir and $extdir." >&2
echo "raftpg: install this build with:" >&2
echo "  sudo make install PG_CONFIG=$PG_CONFIG" >&2
echo "raftpg: then run this command again." >&2
exit 1
