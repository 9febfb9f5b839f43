#!/bin/sh
# scripts/demo.sh start|stop
#
#	"make demo": three local PostgreSQL servers with raftpg preloaded, named
#	node1..node3, in a directory of their own.  start installs missing
#	packages (scripts/deps.sh), builds and installs raftpg, stops a demo
#	left running in the same directory, then creates and starts the servers,
#	forms a cluster with three SQL calls, and shows the product: a table
#	replicated with its rows, a transaction on the leader read on both
#	followers, a follower refusing a write, the leader killed (kill -9 of
#	its postmaster), a new leader taking writes, and the old leader back
#	with every row.
#	stop ("make demo-stop") stops them and removes the directory.
#
#	Servers listen on 127.0.0.1 and on unix sockets in the demo directory,
#	with trust authentication: a demo for one's own machine, nothing more.
#	As root they run as the postgres user.
#
#	Environment:
#	  DEMO_DIR   where the servers live (default /tmp/raftpg-demo)
#	  DEMO_PORT  port of node1; node2 and node3 take the next two
#	             (default 5441)
#	  MAKE       the make to run

set -u

cmd=${1:-start}
top=$(cd "$(dirname "$0")/.." && pwd) || exit 2
MAKE=${MAKE:-make}
NODES=3
DEMO_PORT=${DEMO_PORT:-5441}
DEMO_DIR=${DEMO_DIR:-/tmp/raftpg-demo}
case $DEMO_DIR in
	/*) ;;
	*) DEMO_DIR=$(pwd)/$DEMO_DIR ;;
esac
DEMO_DIR=${DEMO_DIR%/}
MARKER=.raftpg-demo

# From here on, work from a directory the postgres user can enter (a clone
# may live in root's home); every path is absolute.
cd / || exit 1

PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config
[ -x "$PG_CONFIG" ] || PG_CONFIG=pg_config

if [ "$(id -u)" = 0 ]; then
	RUN_AS=postgres
else
	RUN_AS=$(id -un)
fi

say()
{
	echo "raftpg demo: $*"
}

die()
{
	echo "raftpg demo: $*" >&2
	exit 1
}

# Run a PostgreSQL program as the user that owns the demo directory (the
# servers refuse to run as anyone else).
as_owner()
{
	owner=$(stat -c %U "$DEMO_DIR") || exit 1
	if [ "$owner" = "$(id -un)" ]; then
		"$@"
	elif [ "$(id -u)" = 0 ]; then
		runuser -u "$owner" -- "$@"
	else
		die "$DEMO_DIR belongs to $owner; run this as $owner or root"
	fi
}

port_of()
{
	echo $((DEMO_PORT + $1 - 1))
}

# Can 127.0.0.1:$1 be bound?  (What the postmaster is about to do.)
port_free()
{
	perl -MIO::Socket::INET -e '
		exit(IO::Socket::INET->new(LocalAddr => "127.0.0.1",
			LocalPort => $ARGV[0], Proto => "tcp", ReuseAddr => 1,
			Listen => 1) ? 0 : 1)' "$1"
}

psql_node()
{
	psql_port=$(port_of "$1")
	shift
	"$bindir/psql" -X -v ON_ERROR_STOP=1 -h "$DEMO_DIR" -p "$psql_port" \
		-U postgres -d postgres "$@"
}

stop_demo()
{
	if [ ! -e "$DEMO_DIR" ]; then
		say "nothing to stop in $DEMO_DIR"
		return 0
	fi
	[ -f "$DEMO_DIR/$MARKER" ] ||
		die "$DEMO_DIR is not a raftpg demo directory (no $MARKER); not touching it"

	rc=0
	for d in "$DEMO_DIR"/node*; do
		[ -f "$d/postmaster.pid" ] || continue
		# pg_ctl status: 0 running, 3 not running (stale pid file)
		as_owner "$bindir/pg_ctl" -D "$d" status >/dev/null 2>&1
		case $? in
			0)
				say "stopping $(basename "$d")"
				as_owner "$bindir/pg_ctl" -D "$d" -m fast -w stop >/dev/null ||
					rc=1
				;;
			3) ;;
			*) rc=1 ;;
		esac
	done
	[ $rc -eq 0 ] || die "could not stop every server; $DEMO_DIR left in place"
	rm -rf "$DEMO_DIR"
	say "removed $DEMO_DIR"
}

# On a failed start: show the logs, stop what started, remove the directory.
fail_start()
{
	echo "raftpg demo: $*" >&2
	for f in "$DEMO_DIR"/node*.log; do
		[ -f "$f" ] || continue
		case $f in
			*.initdb.log) [ -n "${initdb_failed:-}" ] || continue ;;
		esac
		echo "======== $f (last 50 lines)" >&2
		tail -n 50 "$f" >&2
	done
	stop_demo >&2
	exit 1
}

start_demo()
{
	"$top/scripts/deps.sh" || exit 1
	"$MAKE" -C "$top" all >/dev/null || die "build failed (run make to see why)"
	"$MAKE" -C "$top" install-ext >/dev/null || die "install failed"
	bindir=$("$PG_CONFIG" --bindir) || exit 1

	# unix socket paths are limited to 107 bytes
	sock="$DEMO_DIR/.s.PGSQL.$(port_of $NODES).lock"
	[ ${#sock} -lt 100 ] || die "DEMO_DIR $DEMO_DIR is too long for unix sockets"

	if [ -e "$DEMO_DIR" ]; then
		[ -f "$DEMO_DIR/$MARKER" ] ||
			die "$DEMO_DIR exists and is not a raftpg demo directory; set DEMO_DIR"
		say "a demo already exists in $DEMO_DIR; replacing it"
		stop_demo
	fi

	i=1
	while [ $i -le $NODES ]; do
		port=$(port_of $i)
		port_free "$port" ||
			die "port $port on 127.0.0.1 is in use; free it or choose other ports with DEMO_PORT=<first port>"
		i=$((i + 1))
	done

	mkdir -p "$DEMO_DIR" || exit 1
	touch "$DEMO_DIR/$MARKER"
	# should DEMO_DIR be inside a git work tree, keep it out of git
	echo '*' >"$DEMO_DIR/.gitignore"
	chmod 755 "$DEMO_DIR"
	if [ "$(id -u)" = 0 ]; then
		chown -R postgres: "$DEMO_DIR" || exit 1
	fi
	i=1
	while [ $i -le $NODES ]; do
		d="$DEMO_DIR/node$i"
		say "creating node$i (port $(port_of $i))"
		# -N: a throwaway cluster need not wait for initdb's fsyncs
		as_owner "$bindir/initdb" -D "$d" -U postgres -A trust -E UTF8 -N \
			--no-instructions >"$DEMO_DIR/node$i.initdb.log" 2>&1 || {
			initdb_failed=1
			fail_start "initdb failed for node$i"
		}
		as_owner sh -c "cat >>'$d/postgresql.conf'" <<EOF

# raftpg demo
listen_addresses = '127.0.0.1'
port = $(port_of $i)
unix_socket_directories = '$DEMO_DIR'
shared_preload_libraries = 'raftpg'
raftpg.node_name = 'node$i'
raftpg.database = 'postgres'
EOF
		as_owner "$bindir/pg_ctl" -D "$d" -l "$DEMO_DIR/node$i.log" -w \
			start >/dev/null ||
			fail_start "node$i did not start"
		i=$((i + 1))
	done

	i=1
	while [ $i -le $NODES ]; do
		psql_node $i -q -c 'CREATE EXTENSION raftpg' ||
			fail_start "CREATE EXTENSION failed on node$i"
		i=$((i + 1))
	done

	# the postmasters start the node workers; give them a moment
	i=1
	while [ $i -le $NODES ]; do
		tries=0
		until [ "$(psql_node $i -Atc 'SELECT worker_pid IS NOT NULL FROM raftpg.status()')" = t ]; do
			tries=$((tries + 1))
			[ $tries -lt 300 ] || fail_start "node$i: the raftpg node worker did not start"
			sleep 0.1
		done
		i=$((i + 1))
	done

	# form the cluster: three SQL calls
	conn_of() { echo "host=127.0.0.1 port=$(port_of "$1") dbname=postgres"; }
	# statements from stdin: each runs on its own, as typed into psql
	show() { echo; echo "node$1 -- $2"; printf "%s\n" "$2" | psql_node "$1" -P pager=off -f - || exit 1; }
	show 1 "SELECT raftpg.create_cluster('$(conn_of 1)');"
	tries=0
	until [ "$(psql_node 1 -Atc "SELECT role = 'leader' AND commit_index = last_log_index FROM raftpg.status()")" = t ]; do
		tries=$((tries + 1))
		[ $tries -lt 300 ] || fail_start "node1 did not become the leader"
		sleep 0.1
	done
	i=2
	while [ $i -le $NODES ]; do
		show 1 "SELECT raftpg.add_node('node$i', '$(conn_of $i)');"
		i=$((i + 1))
	done
	show 1 "SELECT * FROM raftpg.nodes;"

	# a replicated table: its definition and rows go through the log
	show 1 "CREATE TABLE public.accounts (id int PRIMARY KEY, owner text NOT NULL, balance numeric NOT NULL DEFAULT 0);
INSERT INTO public.accounts VALUES (1, 'alice', 100), (2, 'bob', 50);
SELECT raftpg.replicate_table('public.accounts');"
	# ordinary SQL on the leader, committed once a majority has it
	show 1 "BEGIN;
UPDATE public.accounts SET balance = balance - 30 WHERE id = 1;
UPDATE public.accounts SET balance = balance + 30 WHERE id = 2;
INSERT INTO public.accounts VALUES (3, 'carol', 0);
COMMIT;"
	last=$(psql_node 1 -Atc "SELECT commit_index FROM raftpg.status()")
	i=2
	while [ $i -le $NODES ]; do
		show $i "SELECT raftpg.wait_for_index($last, '10s') AS caught_up; SELECT * FROM public.accounts ORDER BY id;"
		i=$((i + 1))
	done
	echo
	echo "node2 -- INSERT INTO public.accounts VALUES (4, 'dave', 0);   (a follower refuses writes)"
	psql_node 2 -c "INSERT INTO public.accounts VALUES (4, 'dave', 0);" 2>&1 | sed 's/^/  /'

	# the leader dies: kill -9 of its postmaster
	pid=$(head -1 "$DEMO_DIR/node1/postmaster.pid")
	echo
	say "kill -9 of node1's postmaster (pid $pid), the leader"
	kill -9 "$pid"
	t0=$(date +%s.%N)
	new=
	tries=0
	while [ -z "$new" ]; do
		for i in 2 3; do
			[ "$(psql_node $i -Atc "SELECT role FROM raftpg.status()" 2>/dev/null)" = leader ] && new=$i
		done
		tries=$((tries + 1))
		[ $tries -lt 600 ] || fail_start "no new leader after node1 was killed"
		[ -n "$new" ] || sleep 0.05
	done
	say "node$new leads after $(awk "BEGIN { printf \"%.2f\", $(date +%s.%N) - $t0 }") s"
	# the new leader takes writes (retried while it opens them)
	tries=0
	until psql_node $new -q -c "INSERT INTO public.accounts VALUES (4, 'dave', 10);" 2>/dev/null; do
		tries=$((tries + 1))
		[ $tries -lt 300 ] || fail_start "node$new did not take writes"
		sleep 0.1
	done
	show $new "UPDATE public.accounts SET balance = balance + 1 RETURNING *;"

	# the old leader comes back and catches up with every row
	# (the killed postmaster's children may take a moment to go)
	tries=0
	until as_owner "$bindir/pg_ctl" -D "$DEMO_DIR/node1" -l "$DEMO_DIR/node1.log" -w start >/dev/null 2>&1; do
		tries=$((tries + 1))
		[ $tries -lt 100 ] || fail_start "node1 did not start again"
		sleep 0.2
	done
	last=$(psql_node $new -Atc "SELECT commit_index FROM raftpg.status()")
	show 1 "SELECT raftpg.wait_for_index($last, '30s') AS caught_up; SELECT * FROM public.accounts ORDER BY id;"
	i=1
	while [ $i -le $NODES ]; do
		show $i "SELECT node_name, role, term, leader_name, commit_index, applied_index FROM raftpg.status();"
		i=$((i + 1))
	done
	echo

	echo "The demo cluster runs in $DEMO_DIR (as $RUN_AS):"
	i=1
	while [ $i -le $NODES ]; do
		echo "  node$i:  psql -h $DEMO_DIR -p $(port_of $i) -U postgres postgres"
		echo "          psql -h 127.0.0.1 -p $(port_of $i) -U postgres postgres"
		echo "          log: $DEMO_DIR/node$i.log"
		i=$((i + 1))
	done
	echo "Authentication is trust: anyone on this machine can connect."
	echo "Stop it and remove $DEMO_DIR with:  make demo-stop"
}

case $cmd in
	start)
		start_demo
		;;
	stop)
		bindir=$("$PG_CONFIG" --bindir 2>/dev/null) ||
			die "pg_config not found; nothing can be running"
		stop_demo
		;;
	*)
		echo "usage: $0 start|stop" >&2
		exit 2
		;;
esac
