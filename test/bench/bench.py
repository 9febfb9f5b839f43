#!/usr/bin/env python3
"""test/bench/bench.py -- the benchmark behind "make bench".

Started by test/bench/bench.sh (which checks the dependencies and builds and
installs raftpg first).  On 127.0.0.1 of this machine it starts

  raftpg     3 servers, cluster formed, tables replicated, clients on the
             leader;
  sync-rep   PostgreSQL streaming replication, 1 primary and 2 standbys,
             synchronous_standby_names = 'ANY 1 (s1, s2)';
  single     one PostgreSQL without replication (the ceiling);

runs the same pgbench scripts (test/bench/workloads/*.sql) against each,
interleaved point by point and, within a point, round by round, and
measures TPS, mean and p99 latency (from
pgbench's per-transaction logs) and the CPU of every server process of the
system.  Then failover of raftpg (kill -9 of the leader under a write load)
and the catch-up of a new raftpg server next to pg_basebackup.  It prints a
table, writes a Markdown report and a PNG chart to test/bench/results/ and
ends with one summary line per workload and client count.

Environment (all optional):
  BENCH_QUICK=1         smoke run: update only, 1 and 32 clients, 5 s runs,
                        1 failover, 100,000 rows of catch-up
  BENCH_WORKLOADS       e.g. "update,insert"       (default update,insert,txn)
  BENCH_CLIENTS         e.g. "1,32"                (default 1,8,32,64)
  BENCH_SECS            seconds per point and system (default 15; quick 5)
  BENCH_ROUNDS          rounds each point is split into, the systems taking
                        turns in each (default 3; quick 1)
  BENCH_FAILOVER_REPS   failover repetitions       (default 5; quick 1)
  BENCH_CATCHUP_ROWS    rows for the catch-up test (default 1000000; quick 100000)
  BENCH_PORT            first port to try          (default 5501)
  BENCH_TMPDIR          where the data directories go (default /tmp)
  BENCH_INSERT_KEY      serial (default): the inserted rows take their key from
                        the table's bigserial; random: pgbench draws a random
                        bigint key (no sequence involved)
  BENCH_KEEP=1          keep the data directories and logs
  BENCH_STATE           file to write the work directory's path into (bench.sh)
"""

import datetime
import math
import os
import platform
import pwd
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

TOP = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                   '..', '..'))
BENCH_DIR = os.path.join(TOP, 'test', 'bench')
RESULTS_DIR = os.path.join(BENCH_DIR, 'results')
WORKLOAD_DIR = os.path.join(BENCH_DIR, 'workloads')


def env_str(name, default):
    v = os.environ.get(name, '')
    return v if v != '' else default


def env_int(name, default):
    v = os.environ.get(name, '')
    return int(v) if v != '' else default


QUICK = os.environ.get('BENCH_QUICK', '') not in ('', '0')
WORKLOADS = [w for w in env_str('BENCH_WORKLOADS',
                                'update' if QUICK else 'update,insert,txn').split(',') if w]
CLIENTS = [int(c) for c in env_str('BENCH_CLIENTS',
                                   '1,32' if QUICK else '1,8,32,64').split(',') if c]
SECS = env_int('BENCH_SECS', 5 if QUICK else 15)
ROUNDS = max(1, env_int('BENCH_ROUNDS', 1 if QUICK else 3))
ROUND_SECS = max(1, int(round(SECS / float(ROUNDS))))
WARMUP_SECS = 2 if QUICK else 3
FAILOVER_REPS = env_int('BENCH_FAILOVER_REPS', 1 if QUICK else 5)
CATCHUP_ROWS = env_int('BENCH_CATCHUP_ROWS', 100000 if QUICK else 1000000)
FIRST_PORT = env_int('BENCH_PORT', 5501)
TMP_PARENT = env_str('BENCH_TMPDIR', '/tmp')
KEEP = os.environ.get('BENCH_KEEP', '') not in ('', '0')
INSERT_KEY = env_str('BENCH_INSERT_KEY', 'serial')
if INSERT_KEY not in ('serial', 'random'):
    sys.exit('bench: BENCH_INSERT_KEY must be serial or random')
RESERVED_PORTS = set(range(5441, 5444)) | set(range(5461, 5464))

# the same on every server of every system
SERVER_CONF = """
# make bench
listen_addresses = '127.0.0.1'
port = {port}
unix_socket_directories = '{sockdir}'
max_connections = 200
shared_buffers = 128MB
fsync = on
synchronous_commit = on
full_page_writes = on
wal_level = replica
max_wal_size = 4GB
checkpoint_timeout = 30min
log_line_prefix = '%m [%p] '
"""

PG_CONFIG = '/usr/lib/postgresql/15/bin/pg_config'
if not os.path.exists(PG_CONFIG):
    PG_CONFIG = shutil.which('pg_config') or 'pg_config'

IS_ROOT = os.geteuid() == 0
OWNER = 'postgres' if IS_ROOT else pwd.getpwuid(os.geteuid()).pw_name
TCK = os.sysconf('SC_CLK_TCK')

# the environment of every program we run: none of the caller's PG*
# variables (PGHOST, PGOPTIONS, ...) may redirect or change it
ENV = {k: v for k, v in os.environ.items() if not k.startswith('PG')}
ENV['LC_ALL'] = 'C'

SERVERS = []        # every Server created, for the cleanup
BACKGROUND = []     # every background Popen, for the cleanup
WORK = None
T_START = time.monotonic()


class Fatal(Exception):
    pass


class Stuck(Fatal):
    """a raftpg node stopped applying: measured, reported, not fatal"""


def say(msg):
    t = int(time.monotonic() - T_START)
    print('bench: [%d:%02d] %s' % (t // 60, t % 60, msg), flush=True)


def fmt_cmd(cmd):
    return ' '.join(cmd)


def run(cmd, *, as_owner=False, check=True, timeout=600, input=None, env=None):
    if as_owner and IS_ROOT:
        cmd = ['runuser', '-u', OWNER, '--'] + cmd
    try:
        p = subprocess.run(cmd, input=input, capture_output=True, text=True,
                           timeout=timeout, env=env or ENV, cwd='/')
    except subprocess.TimeoutExpired:
        raise Fatal('timed out after %ss: %s' % (timeout, fmt_cmd(cmd)))
    if check and p.returncode != 0:
        raise Fatal('%s failed (exit %d): %s' % (fmt_cmd(cmd), p.returncode,
                                               (p.stderr or p.stdout).strip()[-3000:]))
    return p


def conninfo(port, connect_timeout=10):
    return ('host=127.0.0.1 port=%d user=postgres dbname=postgres '
            'connect_timeout=%d' % (port, connect_timeout))


def psql(port, sql, *, check=True, timeout=300, connect_timeout=10, env=None):
    """Runs sql (statements one by one, as typed into psql) on the server at
    port; returns its output (unaligned, tuples only), or the CompletedProcess
    when check is False."""
    cmd = [BIN['psql'], '-X', '-A', '-t', '-q', '-v', 'ON_ERROR_STOP=1',
           '-d', conninfo(port, connect_timeout), '-f', '-']
    p = run(cmd, input=sql, check=check, timeout=timeout, env=env)
    return p.stdout.strip() if check else p


def wait_until(what, cond, timeout, interval=0.1):
    deadline = time.monotonic() + timeout
    while True:
        try:
            if cond():
                return
        except Fatal:
            pass
        if time.monotonic() > deadline:
            raise Fatal('timed out after %ss waiting for %s' % (timeout, what))
        time.sleep(interval)


def port_free(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(('127.0.0.1', port))
        s.listen(1)
        return True
    except OSError:
        return False
    finally:
        s.close()


def free_ports(n):
    ports = []
    p = FIRST_PORT
    while len(ports) < n:
        if p > 65000:
            raise Fatal('no %d free ports from %d on' % (n, FIRST_PORT))
        if p not in RESERVED_PORTS and port_free(p):
            ports.append(p)
        p += 1
    return ports


def last_error(server):
    """the last ERROR line of a server's log (with its context), if any"""
    try:
        with open(server.log, errors='replace') as f:
            lines = f.readlines()
    except OSError:
        return ''
    for i in range(len(lines) - 1, -1, -1):
        if ' ERROR: ' in lines[i] and 'cannot write replicated table' not in lines[i] \
                and 'not accepting writes' not in lines[i]:
            msg = lines[i].split(' ERROR: ', 1)[1].strip()
            if i + 1 < len(lines) and 'CONTEXT:' in lines[i + 1]:
                msg += ' (' + lines[i + 1].split('CONTEXT:', 1)[1].strip() + ')'
            return '; its log says: ' + msg
    return ''


def log_errors(servers):
    """distinct ERROR and PANIC messages in the servers' logs, with counts,
    most frequent first"""
    counts = {}
    for srv in servers:
        try:
            with open(srv.log, errors='replace') as f:
                for line in f:
                    for tag in (' ERROR: ', ' PANIC: '):
                        if tag in line:
                            msg = tag.strip() + ' ' + line.split(tag, 1)[1].strip()
                            msg = re.sub(r'\d{3,}', 'N', msg)
                            counts[msg] = counts.get(msg, 0) + 1
        except OSError:
            pass
    return sorted(counts.items(), key=lambda kv: -kv[1])


def tail(path, n=40):
    try:
        with open(path, errors='replace') as f:
            return ''.join(f.readlines()[-n:])
    except OSError:
        return ''


# ---------------------------------------------------------------------------
# servers

class Server:
    def __init__(self, name, port):
        self.name = name
        self.port = port
        self.dir = os.path.join(WORK, name)
        self.log = os.path.join(WORK, name + '.log')
        SERVERS.append(self)

    def initdb(self):
        # -N: a throwaway cluster need not wait for initdb's own fsyncs
        run([BIN['initdb'], '-D', self.dir, '-U', 'postgres', '-A', 'trust',
             '-E', 'UTF8', '--locale=C', '-N', '--no-instructions'],
            as_owner=True, timeout=300)
        self.configure(SERVER_CONF.format(port=self.port, sockdir=SOCKDIR))

    def configure(self, text, fname='postgresql.conf'):
        # appending keeps the file's owner (the server's user)
        with open(os.path.join(self.dir, fname), 'a') as f:
            f.write(text)

    def start(self, tries=1):
        for i in range(tries):
            p = run([BIN['pg_ctl'], '-D', self.dir, '-l', self.log, '-w',
                     '-t', '120', 'start'], as_owner=True, check=False,
                    timeout=200)
            if p.returncode == 0:
                return
            time.sleep(0.3)
        raise Fatal('%s did not start:\n%s' % (self.name, tail(self.log)))

    def running(self):
        pidfile = os.path.join(self.dir, 'postmaster.pid')
        if not os.path.exists(pidfile):
            return False
        p = run([BIN['pg_ctl'], '-D', self.dir, 'status'], as_owner=True,
                check=False, timeout=30)
        return p.returncode == 0

    def stop(self, mode='fast'):
        if not os.path.exists(os.path.join(self.dir, 'postmaster.pid')):
            return True
        p = run([BIN['pg_ctl'], '-D', self.dir, '-m', mode, '-w', '-t', '60',
                 'stop'], as_owner=True, check=False, timeout=90)
        if p.returncode != 0 and mode != 'immediate':
            p = run([BIN['pg_ctl'], '-D', self.dir, '-m', 'immediate', '-w',
                     '-t', '60', 'stop'], as_owner=True, check=False, timeout=90)
        return p.returncode == 0 or not self.running()

    def pm_pid(self):
        with open(os.path.join(self.dir, 'postmaster.pid')) as f:
            return int(f.readline())

    def sql(self, q, **kw):
        return psql(self.port, q, **kw)


def read_stat(pid):
    """(ppid, utime + stime + cutime + cstime in ticks) of a process"""
    with open('/proc/%s/stat' % pid) as f:
        s = f.read()
    rest = s[s.rindex(')') + 2:].split()
    # rest[0] is field 3 (state): field n is rest[n - 3]
    return int(rest[1]), sum(int(x) for x in rest[11:15])


def cpu_seconds(pm_pids):
    """CPU seconds used so far by the postmasters and all their children,
    the exited ones included (a postmaster's cutime/cstime count the
    children it has reaped)."""
    pms = set(pm_pids)
    total = 0
    for pm in pm_pids:
        total += read_stat(pm)[1]
    for d in os.listdir('/proc'):
        if not d.isdigit():
            continue
        try:
            ppid, ticks = read_stat(d)
        except (OSError, ValueError, IndexError):
            continue
        if ppid in pms:
            total += ticks
    return total / TCK


class System:
    key = label = ''
    # what LagSampler asks each server every 0.2 s at the highest client
    # count: on raftpg the positions the lag figures come from; on the
    # others the same kind of query, read and thrown away, so that each
    # system bears the same polling
    POLL = "SELECT extract(epoch FROM clock_timestamp()), pg_is_in_recovery()"

    def __init__(self, servers):
        self.servers = servers

    def cpu(self):
        return cpu_seconds([s.pm_pid() for s in self.servers])

    def checkpoint(self):
        for s in self.servers:
            s.sql('CHECKPOINT', timeout=300)

    def write_server(self):
        return self.servers[0]

    def drain(self, timeout=300):
        return 0.0


class Raft(System):
    key = 'raftpg'
    POLL = ("SELECT extract(epoch FROM clock_timestamp()), role, commit_index, "
            "applied_index FROM raftpg.status()")
    label = 'raftpg (3 servers)'

    def status(self, s, timeout=10):
        out = s.sql('SELECT role, commit_index, applied_index, last_log_index '
                    'FROM raftpg.status()', timeout=timeout, connect_timeout=2)
        role, ci, ai, li = out.split('|')
        return role, int(ci or 0), int(ai or 0), int(li or 0)

    def leader(self, candidates=None, timeout=60):
        found = []

        def probe():
            for s in candidates or self.servers:
                try:
                    if self.status(s)[0] == 'leader':
                        found.append(s)
                        return True
                except (Fatal, ValueError):
                    pass
            return False
        wait_until('a raftpg leader', probe, timeout, 0.1)
        return found[0]

    def write_server(self):
        return self.leader()

    def drain(self, timeout=300, stuck_after=10):
        """Waits until every node has applied what the leader has committed;
        returns how long that took.  Gives up (Stuck) when a node's applied
        index has not moved for stuck_after seconds."""
        t0 = time.monotonic()
        leader = self.leader()
        target = self.status(leader)[1]
        for s in self.servers:
            last = None
            moved = time.monotonic()
            while True:
                applied = self.status(s)[2]
                if applied >= target:
                    break
                now = time.monotonic()
                if applied != last:
                    last, moved = applied, now
                if now - moved > stuck_after or now - t0 > timeout:
                    raise Stuck('%s stopped applying at index %d (leader commit index %d)%s'
                                % (s.name, applied, target, last_error(s)))
                time.sleep(0.05)
        return time.monotonic() - t0


class SyncRep(System):
    key = 'sync-rep'
    label = 'sync-rep (1 primary + 2 standbys)'

    def drain(self, timeout=300):
        """Waits until both standbys have replayed the primary's WAL."""
        t0 = time.monotonic()
        p = self.servers[0]
        target = p.sql('SELECT pg_current_wal_lsn()')
        wait_until('the standbys to replay up to %s' % target,
                   lambda: p.sql("SELECT count(*) FROM pg_stat_replication "
                                 "WHERE replay_lsn >= '%s'" % target) == '2',
                   timeout, 0.05)
        return time.monotonic() - t0


class Single(System):
    key = 'single'
    label = 'single PostgreSQL'


# ---------------------------------------------------------------------------
# setting the systems up

TABLES_SQL = """
CREATE TABLE public.t (id int PRIMARY KEY, v bigint NOT NULL DEFAULT 0);
INSERT INTO public.t SELECT g, 0 FROM generate_series(1, 10000) g;
CREATE TABLE public.ins (id bigserial PRIMARY KEY, k int NOT NULL,
    v bigint NOT NULL, created timestamptz NOT NULL DEFAULT now());
"""


def raft_conninfo(s):
    return 'host=127.0.0.1 port=%d user=postgres dbname=postgres' % s.port


def raft_configure(s):
    s.configure("shared_preload_libraries = 'raftpg'\n"
                "raftpg.node_name = '%s'\n"
                "raftpg.database = 'postgres'\n" % s.name)


def raft_prepare(s):
    """CREATE EXTENSION on a started server and wait for its node worker."""
    s.sql('CREATE EXTENSION raftpg')
    wait_until('the raftpg node worker of %s' % s.name,
               lambda: s.sql('SELECT worker_pid IS NOT NULL FROM raftpg.status()') == 't',
               60)


def raft_form(servers):
    """Forms a cluster of the started servers, the first one leading."""
    for s in servers:
        raft_prepare(s)
    first = servers[0]
    first.sql("SELECT raftpg.create_cluster('%s')" % raft_conninfo(first))
    wait_until('%s to lead' % first.name,
               lambda: first.sql("SELECT role = 'leader' AND commit_index = last_log_index "
                                 "FROM raftpg.status()") == 't', 60)
    for s in servers[1:]:
        first.sql("SELECT raftpg.add_node('%s', '%s')" % (s.name, raft_conninfo(s)),
                  timeout=180)


def setup_raft(ports):
    servers = [Server('r%d' % (i + 1), ports[i]) for i in range(3)]
    for s in servers:
        say('raftpg: creating %s (port %d)' % (s.name, s.port))
        s.initdb()
        raft_configure(s)
        s.start()
    say('raftpg: forming the cluster')
    raft_form(servers)
    leader = servers[0]
    leader.sql(TABLES_SQL)
    leader.sql("SELECT raftpg.replicate_table('public.t');\n"
               "SELECT raftpg.replicate_table('public.ins');", timeout=180)
    sysm = Raft(servers)
    sysm.drain(60)
    for s in servers:
        if s.sql('SELECT count(*) FROM public.t') != '10000':
            raise Fatal('raftpg: table t is not complete on %s' % s.name)
        s.sql('VACUUM ANALYZE public.t; VACUUM ANALYZE public.ins')
    return sysm


def setup_syncrep(ports):
    primary = Server('s0', ports[0])
    say('sync-rep: creating the primary s0 (port %d)' % primary.port)
    primary.initdb()
    primary.start()
    primary.sql(TABLES_SQL)
    primary.sql('VACUUM ANALYZE public.t; VACUUM ANALYZE public.ins')
    standbys = []
    for i in (1, 2):
        s = Server('s%d' % i, ports[i])
        say('sync-rep: creating the standby %s (port %d) with pg_basebackup' % (s.name, s.port))
        run([BIN['pg_basebackup'], '-D', s.dir, '-d', conninfo(primary.port),
             '-R', '-X', 'stream', '-c', 'fast'], as_owner=True, timeout=600)
        s.configure("\n# make bench: standby %s\nport = %d\n" % (s.name, s.port))
        s.configure("primary_conninfo = 'host=127.0.0.1 port=%d user=postgres "
                    "application_name=%s'\n" % (primary.port, s.name),
                    'postgresql.auto.conf')
        s.start()
        standbys.append(s)
    # synchronous from now on (before, the commits above would have waited
    # for standbys that did not exist yet)
    primary.configure("synchronous_standby_names = 'ANY 1 (s1, s2)'\n")
    primary.sql('SELECT pg_reload_conf()')
    wait_until('both standbys streaming as quorum candidates',
               lambda: primary.sql("SELECT count(*) FROM pg_stat_replication "
                                   "WHERE state = 'streaming' AND sync_state = 'quorum' "
                                   "AND application_name IN ('s1', 's2')") == '2', 60)
    return SyncRep([primary] + standbys)


def setup_single(port):
    s = Server('p0', port)
    say('single: creating p0 (port %d)' % s.port)
    s.initdb()
    s.start()
    s.sql(TABLES_SQL)
    s.sql('VACUUM ANALYZE public.t; VACUUM ANALYZE public.ins')
    return Single([s])


# ---------------------------------------------------------------------------
# apply lag sampling: one psql per raftpg node repeating a query

class LagSampler:
    def __init__(self, servers, tag, query):
        self.procs = []
        for s in servers:
            path = os.path.join(WORK, 'lag-%s-%s.txt' % (tag, s.name))
            f = open(path, 'w')
            p = subprocess.Popen([BIN['psql'], '-X', '-A', '-t', '-F', ' ',
                                  '-d', conninfo(s.port)],
                                 stdin=subprocess.PIPE, stdout=f,
                                 stderr=subprocess.DEVNULL, text=True,
                                 env=ENV, cwd='/')
            BACKGROUND.append(p)
            p.stdin.write(query + ' \\watch 0.2\n')
            p.stdin.flush()
            self.procs.append((s, p, f, path))

    def stop(self):
        """Stops sampling; returns the samples, {server: [(t, role, commit,
        applied)]}"""
        samples = {}
        for s, p, f, path in self.procs:
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            f.close()
            rows = []
            with open(path) as g:
                for line in g:
                    parts = line.split()
                    if len(parts) == 4:
                        try:
                            rows.append((float(parts[0]), parts[1],
                                         int(parts[2]), int(parts[3])))
                        except ValueError:
                            pass
            samples[s.name] = rows
        return samples


def lag_figures(samples):
    """From the samples of every node: the follower apply lag, in entries,
    against the leader's commit index at the same moment (interpolated)."""
    leader_rows = None
    for name, rows in samples.items():
        if rows and sum(1 for r in rows if r[1] == 'leader') > len(rows) / 2:
            leader_rows = [(r[0], r[2]) for r in rows if r[1] == 'leader']
    if not leader_rows or len(leader_rows) < 2:
        return None

    def commit_at(t):
        if t <= leader_rows[0][0]:
            return leader_rows[0][1]
        for (t0, c0), (t1, c1) in zip(leader_rows, leader_rows[1:]):
            if t0 <= t <= t1:
                return c0 + (c1 - c0) * ((t - t0) / (t1 - t0) if t1 > t0 else 0)
        return leader_rows[-1][1]

    out = {}
    for name, rows in samples.items():
        fr = [r for r in rows if r[1] == 'follower']
        if not fr:
            continue
        lags = [max(0.0, commit_at(t) - applied) for t, _, _, applied in fr]
        own = [max(0, commit - applied) for _, _, commit, applied in fr]
        out[name] = {'samples': len(fr), 'max': max(lags),
                     'mean': statistics.mean(lags), 'max_own': max(own)}
    return out


# ---------------------------------------------------------------------------
# one measured point

def parse_pgbench_logs(logdir):
    lat = []
    failed = 0
    for fn in os.listdir(logdir):
        with open(os.path.join(logdir, fn)) as f:
            for line in f:
                parts = line.split()
                if len(parts) < 6:
                    continue
                try:
                    lat.append(int(parts[2]))
                except ValueError:
                    failed += 1     # "failed", "skipped", ...
    return lat, failed


def percentile(sorted_values, q):
    if not sorted_values:
        return None
    k = max(0, math.ceil(q * len(sorted_values)) - 1)
    return sorted_values[k]


def pgbench_cmd(workload, clients, secs, port, log_prefix=None):
    cmd = [BIN['pgbench'], '-n', '-M', 'prepared',
           '-f', os.path.join(WORKLOAD_DIR, workload + '.sql'),
           '-c', str(clients), '-j', str(min(clients, 4)), '-T', str(secs),
           '-D', 'randkey=%d' % (INSERT_KEY == 'random')]
    if log_prefix:
        cmd += ['-l', '--log-prefix', log_prefix]
    cmd += ['-h', '127.0.0.1', '-p', str(port), '-U', 'postgres', 'postgres']
    return cmd


def measure(sysm, workload, clients, secs, sample_lag=False, rnd=0):
    base = tag = '%s-%s-%d-r%d' % (sysm.key, workload, clients, rnd + 1)
    n = 1
    while os.path.exists(os.path.join(WORK, 'pgbench-' + tag)):
        n += 1                          # a point repeated in BENCH_CLIENTS
        tag = '%s-%d' % (base, n)
    logdir = os.path.join(WORK, 'pgbench-' + tag)
    os.makedirs(logdir)
    sysm.checkpoint()
    server = sysm.write_server()
    cmd = pgbench_cmd(workload, clients, secs, server.port,
                      os.path.join(logdir, 'tx'))
    sampler = LagSampler(sysm.servers, tag, sysm.POLL) if sample_lag else None
    cpu0 = sysm.cpu()
    timed_out = False
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, env=ENV, cwd=logdir)
    BACKGROUND.append(p)
    try:
        out, err = p.communicate(timeout=secs + 120)
    except subprocess.TimeoutExpired:
        timed_out = True
        p.kill()
        out, err = p.communicate()
    samples = sampler.stop() if sampler else None
    stuck = None
    try:
        drain = sysm.drain()
    except Stuck as e:
        drain = None
        stuck = str(e)
    time.sleep(0.2)     # let the postmasters reap pgbench's backends
    cpu1 = sysm.cpu()

    r = {'system': sysm.key, 'workload': workload, 'clients': clients,
         'drain_s': drain}
    m = re.search(r'tps = ([0-9.]+) \(without initial connection time\)', out)
    r['tps'] = float(m.group(1)) if m else None
    lat, failed = parse_pgbench_logs(logdir)
    r['lat'] = lat
    r['cpu_s'] = cpu1 - cpu0
    aborted = len(re.findall(r'client \d+ (?:script \d+ )?aborted', err))
    m = re.search(r'number of failed transactions: (\d+)', out)
    r['failed'] = max(failed, int(m.group(1)) if m else 0)
    r['aborted_clients'] = aborted
    errs = [l for l in err.splitlines() if 'ERROR' in l or 'FATAL' in l or 'aborted' in l]
    r['first_error'] = ('pgbench timed out; ' if timed_out else '') + (errs[0] if errs else '')
    r['stuck'] = stuck
    if r['tps'] is None and not r['first_error']:
        r['first_error'] = (err.strip().splitlines() or ['pgbench printed no tps'])[-1]
    if samples is not None and sysm.key == 'raftpg':
        r['lag'] = lag_figures(samples)
    if not KEEP:
        shutil.rmtree(logdir, ignore_errors=True)
    return r


def combine(rounds):
    """One point's figures from its rounds (measure()'s results, of equal
    length): TPS the mean of the rounds', latencies over every transaction
    of every round, CPU per commit over all of them."""
    r = {k: v for k, v in rounds[0].items() if k != 'lat'}
    tps = [x['tps'] for x in rounds]
    r['round_tps'] = tps
    r['tps'] = None if None in tps else statistics.mean(tps)
    lat = sorted(v for x in rounds for v in x['lat'])
    r['commits'] = len(lat)
    r['mean_ms'] = statistics.mean(lat) / 1000.0 if lat else None
    r['p99_ms'] = percentile(lat, 0.99) / 1000.0 if lat else None
    r['cpu_s'] = sum(x['cpu_s'] for x in rounds)
    r['cpu_per_1k'] = r['cpu_s'] / len(lat) * 1000.0 if lat else None
    drains = [x['drain_s'] for x in rounds]
    r['drain_s'] = None if None in drains else max(drains)
    r['failed'] = sum(x['failed'] for x in rounds)
    r['aborted_clients'] = sum(x['aborted_clients'] for x in rounds)
    r['first_error'] = next((x['first_error'] for x in rounds if x['first_error']), '')
    r['stuck'] = next((x['stuck'] for x in rounds if x['stuck']), None)
    lags = [x['lag'] for x in rounds if x.get('lag')]
    if lags:
        merged = {}
        for name in sorted(set(n for lg in lags for n in lg)):
            parts = [lg[name] for lg in lags if name in lg]
            n = sum(p['samples'] for p in parts)
            merged[name] = {'samples': n,
                            'max': max(p['max'] for p in parts),
                            'mean': sum(p['mean'] * p['samples'] for p in parts) / n,
                            'max_own': max(p['max_own'] for p in parts)}
        r['lag'] = merged
    else:
        r.pop('lag', None)
    return r


def fmt(v, spec='%.2f', none='-'):
    return none if v is None else spec % v


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


# ---------------------------------------------------------------------------
# failover and catch-up

FAILOVER_GIVEUP = 60


def probe_sql(rep):
    if INSERT_KEY == 'random':
        return ("INSERT INTO public.ins (id, k, v) VALUES "
                "((random() * 9e18)::bigint, -1, %d)" % rep)
    return "INSERT INTO public.ins (k, v) VALUES (-1, %d)" % rep


def failover(raft, reps):
    """kill -9 of the leader's postmaster under an UPDATE load from pgbench;
    the time until an INSERT commits on some node, reps times.  Returns
    (times, details, error): error says why the repetitions stopped early."""
    times = []
    details = []
    env = dict(ENV, PGOPTIONS='-c raftpg.commit_timeout=3s')
    for rep in range(1, reps + 1):
        leader = raft.leader()
        say('failover %d/%d: load on %s, then kill -9 of its postmaster' %
            (rep, reps, leader.name))
        load = subprocess.Popen(pgbench_cmd('update', 8, 60, leader.port),
                                stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, env=ENV, cwd='/')
        BACKGROUND.append(load)
        time.sleep(3)
        if load.poll() is not None:
            raise Fatal('failover: the write load ended before the kill')
        pm = leader.pm_pid()
        t0 = time.monotonic()
        os.kill(pm, signal.SIGKILL)
        # an INSERT on every node at once, again 20 ms after each answer,
        # until one commits: a node that does not answer (the dead one)
        # holds up no other
        inflight = {}
        last_start = {}
        last_err = {}
        tries = 0
        winner = None
        while winner is None and time.monotonic() - t0 < FAILOVER_GIVEUP:
            now = time.monotonic()
            for srv in raft.servers:
                if srv.name in inflight or now - last_start.get(srv.name, 0) < 0.02:
                    continue
                cmd = [BIN['psql'], '-X', '-q', '-v', 'ON_ERROR_STOP=1',
                       '-d', conninfo(srv.port, 2), '-c', probe_sql(rep)]
                inflight[srv.name] = (srv, subprocess.Popen(
                    cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                    text=True, env=env, cwd='/'))
                BACKGROUND.append(inflight[srv.name][1])
                last_start[srv.name] = now
                tries += 1
            for name, (srv, p) in list(inflight.items()):
                if p.poll() is None:
                    continue
                err = p.stderr.read().strip()
                del inflight[name]
                if p.returncode == 0:
                    winner = srv
                    break
                last_err[name] = err.splitlines()[0] if err else 'exit %d' % p.returncode
            if winner is None:
                time.sleep(0.005)
        dt = time.monotonic() - t0
        for srv, p in inflight.values():
            if p.poll() is None:
                p.kill()
            p.wait()
        if load.poll() is None:
            load.kill()
        load.wait()
        if winner is None:
            why = ('no INSERT committed within %d s of the kill; last answers: %s%s' %
                   (FAILOVER_GIVEUP,
                    '; '.join('%s: %s' % kv for kv in sorted(last_err.items())),
                    ''.join(' | %s%s' % (srv.name, last_error(srv))
                            for srv in raft.servers if srv is not leader)))
            say('failover %d/%d FAILED: %s' % (rep, reps, why))
            try:
                leader.start(tries=100)
            except Fatal:
                pass
            return times, details, 'repetition %d: %s' % (rep, why)
        times.append(dt)
        say('failover %d/%d: first write committed on %s %.2f s after the kill' %
            (rep, reps, winner.name, dt))
        # the old leader comes back (its orphaned children may take a moment)
        t1 = time.monotonic()
        leader.start(tries=100)
        try:
            new_leader = raft.leader()
            target = raft.status(new_leader)[1]
            wait_until('%s to rejoin' % leader.name,
                       lambda: (lambda st: st[0] == 'follower' and st[2] >= target)(
                           raft.status(leader)), 120, 0.1)
        except Fatal as e:
            details.append({'killed': leader.name, 'new': winner.name,
                            'seconds': dt, 'rejoin_s': None, 'tries': tries})
            why = 'repetition %d: %s did not rejoin: %s%s' % (rep, leader.name, e,
                                                               last_error(leader))
            say('failover %d/%d: %s' % (rep, reps, why))
            return times, details, why
        rejoin = time.monotonic() - t1
        say('failover %d/%d: %s restarted and caught up in %.2f s' %
            (rep, reps, leader.name, rejoin))
        details.append({'killed': leader.name, 'new': winner.name,
                        'seconds': dt, 'rejoin_s': rejoin, 'tries': tries,
                        'answers': dict(last_err)})
    return times, details, None


def catchup(ports, rows):
    """A fresh 3-server raftpg cluster gets `rows` rows through its leader;
    then a fourth server joins; next to it pg_basebackup of the same rows
    from a fresh single PostgreSQL."""
    res = {'rows': rows}
    single = Server('b0', ports[4])
    single.initdb()
    single.start()
    servers = [Server('c%d' % (i + 1), ports[i]) for i in range(3)]
    for s in servers:
        s.initdb()
        raft_configure(s)
        s.start()
    say('catch-up: forming a fresh raftpg cluster c1..c3')
    raft_form(servers)
    cl = Raft(servers)
    leader = servers[0]
    table = ("CREATE TABLE public.big (id bigint PRIMARY KEY, k int NOT NULL, "
             "v bigint NOT NULL, pad text NOT NULL);\n")
    leader.sql(table)
    leader.sql("SELECT raftpg.replicate_table('public.big')", timeout=180)
    single.sql(table)
    batch = 50000
    say('catch-up: inserting %d rows through the leader (%d rows per transaction)'
        % (rows, batch))
    t0 = time.monotonic()
    for lo in range(1, rows + 1, batch):
        hi = min(rows, lo + batch - 1)
        ins = ("INSERT INTO public.big SELECT g, g %% 10000, g, md5(g::text) "
               "FROM generate_series(%d, %d) g" % (lo, hi))
        leader.sql(ins, timeout=600)
        single.sql(ins, timeout=600)
    res['load_s'] = time.monotonic() - t0
    cl.drain(600)
    res['load_applied_s'] = time.monotonic() - t0
    res['log_entries'] = cl.status(leader)[1]
    res['table_mb'] = int(leader.sql("SELECT pg_total_relation_size('public.big')")) / 1048576.0
    res['log_mb'] = int(leader.sql("SELECT pg_total_relation_size('raftpg.log')")) / 1048576.0
    for s in servers:
        s.sql('CHECKPOINT')

    new = Server('c4', ports[3])
    say('catch-up: a new server c4 joins the cluster')
    t0 = time.monotonic()
    new.initdb()
    raft_configure(new)
    new.start()
    raft_prepare(new)
    res['prepare_s'] = time.monotonic() - t0
    t0 = time.monotonic()
    leader.sql("SELECT raftpg.add_node('c4', '%s')" % raft_conninfo(new), timeout=3600)
    res['add_node_s'] = time.monotonic() - t0
    target = cl.status(leader)[1]
    wait_until('c4 to apply up to %d' % target,
               lambda: cl.status(new)[2] >= target, 3600, 0.05)
    res['caught_up_s'] = time.monotonic() - t0
    n = new.sql('SELECT count(*) FROM public.big')
    res['rows_on_new'] = int(n)
    if int(n) != rows:
        raise Fatal('catch-up: c4 has %s rows of %d' % (n, rows))
    say('catch-up: c4 caught up in %.2f s (add_node returned after %.2f s)' %
        (res['caught_up_s'], res['add_node_s']))
    for s in servers + [new]:
        s.stop()
    single.sql('CHECKPOINT')

    bb = os.path.join(WORK, 'basebackup')
    say('catch-up: pg_basebackup -X stream of the single PostgreSQL (%d rows)' % rows)
    t0 = time.monotonic()
    run([BIN['pg_basebackup'], '-D', bb, '-d', conninfo(single.port), '-X', 'stream',
         '-c', 'fast'], as_owner=True, timeout=3600)
    res['basebackup_s'] = time.monotonic() - t0
    res['basebackup_mb'] = dir_size(bb) / 1048576.0
    res['single_db_mb'] = int(single.sql("SELECT pg_database_size('postgres')")) / 1048576.0
    say('catch-up: pg_basebackup took %.2f s (%.0f MB)' % (res['basebackup_s'], res['basebackup_mb']))
    single.stop()
    return res


def dir_size(path):
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_size
            except OSError:
                pass
    return total


# ---------------------------------------------------------------------------
# output

SYSTEMS = ['raftpg', 'sync-rep', 'single']


def table_rows(results):
    """Rows of the result table: one per workload, clients and system."""
    rows = []
    for w in WORKLOADS:
        for c in CLIENTS:
            ref = results.get((w, c, 'sync-rep'), {})
            for k in SYSTEMS:
                r = results.get((w, c, k))
                if r is None:
                    continue
                rt = rl = rp = None
                spread = '-'
                if k == 'raftpg':
                    rt = ratio(r['tps'], ref.get('tps'))
                    per = [ratio(a, b) for a, b in zip(r.get('round_tps', []),
                                                       ref.get('round_tps', []))]
                    if len(per) > 1 and None not in per:
                        spread = '%.2f-%.2f' % (min(per), max(per))
                    rl = ratio(r['mean_ms'], ref.get('mean_ms'))
                    rp = ratio(r['p99_ms'], ref.get('p99_ms'))
                errors = r['failed'] + r['aborted_clients']
                rows.append([w, str(c), k, fmt(r['tps'], '%.0f'),
                             fmt(r['mean_ms'], '%.2f'), fmt(r['p99_ms'], '%.2f'),
                             fmt(r['cpu_per_1k'], '%.3f'),
                             ('-' if k == 'single' else fmt(r['drain_s'], '%.2f', 'stuck')),
                             fmt(rt), spread, fmt(rl), fmt(rp),
                             str(errors) if errors else ''])
    return rows


HEADER = ['workload', 'clients', 'system', 'TPS', 'mean ms', 'p99 ms',
          'CPU s/1k commits', 'drain s', 'TPS ratio', 'by round', 'mean ratio',
          'p99 ratio', 'errors']


def text_table(rows):
    widths = [max(len(HEADER[i]), *(len(r[i]) for r in rows)) for i in range(len(HEADER))]
    lines = ['  '.join(h.rjust(widths[i]) for i, h in enumerate(HEADER))]
    for r in rows:
        lines.append('  '.join(v.rjust(widths[i]) for i, v in enumerate(r)))
    return '\n'.join(lines)


def md_table(header, rows):
    def numeric(i):
        vals = [r[i] for r in rows if r[i] not in ('', '-')]
        return bool(vals) and all(re.match(r'^-?[0-9.]+$', v) for v in vals)
    out = ['| ' + ' | '.join(header) + ' |',
           '|' + '|'.join('---:' if numeric(i) else '---' for i in range(len(header))) + '|']
    for r in rows:
        out.append('| ' + ' | '.join(r) + ' |')
    return '\n'.join(out)


def summary_lines(results):
    lines = []
    for w in WORKLOADS:
        for c in CLIENTS:
            a = results.get((w, c, 'raftpg'), {}).get('tps')
            b = results.get((w, c, 'sync-rep'), {}).get('tps')
            q = ratio(a, b)
            lines.append('raftpg/sync-rep TPS ratio at %d clients (%s): %s' %
                         (c, w, fmt(q, '%.2f', 'n/a')))
    return lines


def chart(results, png):
    data = os.path.join(WORK, 'chart.dat')
    with open(data, 'w') as f:
        for w in WORKLOADS:
            f.write('# %s\n' % w)
            for c in CLIENTS:
                vals = [results.get((w, c, k), {}).get('tps') for k in SYSTEMS]
                f.write('%d %s\n' % (c, ' '.join('?' if v is None else '%.1f' % v
                                                  for v in vals)))
            f.write('\n\n')
    n = len(WORKLOADS)
    xt = ', '.join(str(c) for c in CLIENTS)
    gp = ["set terminal pngcairo size %d,460 font 'sans,10'" % (430 * n + 120),
          "set output '%s'" % png, 'set termoption noenhanced',
          "set datafile missing '?'",
          "set multiplot layout 1,%d title 'TPS vs clients (%s, %s)'" %
          (n, command_line(), datetime.date.today().isoformat()),
          'set logscale x 2', 'set xtics (%s)' % xt, "set xlabel 'clients'",
          "set ylabel 'TPS'", 'set yrange [0:*]', 'set grid', 'set key top left',
          'set xrange [%g:%g]' % (min(CLIENTS) / 1.3, max(CLIENTS) * 1.3)]
    for i, w in enumerate(WORKLOADS):
        gp.append("set title '%s'" % w)
        gp.append("plot '%s' index %d using 1:2 with linespoints lw 2 title 'raftpg', "
                  "'' index %d using 1:3 with linespoints lw 2 title 'sync-rep', "
                  "'' index %d using 1:4 with linespoints lw 2 dt 2 title 'single PostgreSQL'"
                  % (data, i, i, i))
    gp.append('unset multiplot')
    run(['gnuplot'], input='\n'.join(gp) + '\n', timeout=120)


def machine_facts():
    facts = {}
    facts['nproc'] = os.cpu_count()
    try:
        with open('/proc/meminfo') as f:
            kb = int(re.search(r'MemTotal:\s+(\d+)', f.read()).group(1))
        facts['memory'] = '%.1f GiB' % (kb / 1048576.0)
    except (OSError, AttributeError):
        facts['memory'] = '?'
    try:
        with open('/proc/cpuinfo') as f:
            m = re.search(r'model name\s*:\s*(.*)', f.read())
        facts['cpu'] = m.group(1).strip() if m else '?'
    except OSError:
        facts['cpu'] = '?'
    facts['kernel'] = platform.release()
    facts['postgres'] = run([BIN['postgres'], '--version']).stdout.strip()
    facts['python'] = platform.python_version()
    p = run(['git', '-C', TOP, 'rev-parse', '--short', 'HEAD'], check=False)
    rev = p.stdout.strip() if p.returncode == 0 else 'unknown'
    if rev != 'unknown':
        # the reports of earlier runs are not the code measured
        d = run(['git', '-C', TOP, 'status', '--porcelain', '--untracked-files=no',
                 '--', '.', ':(exclude)test/bench/results'],
                check=False)
        if d.stdout.strip():
            rev += ' (with uncommitted changes)'
    facts['revision'] = rev
    return facts


def command_line():
    extra = ['%s=%s' % (k, os.environ[k]) for k in sorted(os.environ)
             if k.startswith('BENCH_') and k != 'BENCH_STATE' and os.environ[k] != '']
    return ' '.join(['make bench'] + extra)


def report(results, idle, fo, cu, facts, started, elapsed, png_name, errors_seen,
           raft_log_errors):
    rows = table_rows(results)
    L = []
    L.append('# raftpg benchmark%s' % (' (quick run)' if QUICK else ''))
    L.append('')
    L.append('Made by `%s` on %s (UTC), in %.1f minutes.' %
             (command_line(), started.strftime('%Y-%m-%d %H:%M'), elapsed / 60.0))
    L.append('')
    L.append('| machine | |')
    L.append('|---|---|')
    L.append('| CPUs (nproc) | %s |' % facts['nproc'])
    L.append('| CPU | %s |' % facts['cpu'])
    L.append('| memory | %s |' % facts['memory'])
    L.append('| kernel | %s |' % facts['kernel'])
    L.append('| PostgreSQL | %s |' % facts['postgres'])
    L.append('| raftpg revision | %s |' % facts['revision'])
    L.append('')
    L.append('Everything ran on this one machine, on 127.0.0.1, one system at a time, '
             'the systems interleaved point by point, and each point measured in %d '
             'round(s) of %d s with the systems taking turns, in reverse order every other '
             'round (the machine is shared: absolute numbers drift, the ratios of one run '
             'hold better; *by round* shows how far the TPS ratio of single rounds '
             'strayed).' % (ROUNDS, ROUND_SECS))
    L.append('')
    L.append('Systems, each server with `shared_buffers = 128MB`, `fsync = on`, '
             '`synchronous_commit = on`, `max_wal_size = 4GB`, '
             '`checkpoint_timeout = 30min` (a CHECKPOINT on every server before each round):')
    L.append('')
    L.append('- **raftpg**: 3 servers, cluster formed, tables replicated with '
             '`raftpg.replicate_table`, clients on the leader; default raftpg settings '
             '(heartbeat 100ms, election timeout 1000ms).')
    L.append("- **sync-rep**: PostgreSQL streaming replication, 1 primary and 2 standbys "
             "(`pg_basebackup -R`), `synchronous_standby_names = 'ANY 1 (s1, s2)'`.")
    L.append('- **single**: one PostgreSQL without replication (the ceiling).')
    L.append('')
    L.append('Workloads (`test/bench/workloads/`, `pgbench -n -M prepared -c N -j min(N,4) '
             '-T %d -l`, per round): **update** `UPDATE t SET v = v + 1 WHERE id = :id` on 10,000 rows; '
             '**insert** a row into a table with a bigserial primary key (%s); **txn** BEGIN, '
             '3 updates by primary key, 1 insert, 1 select, END.' %
             (ROUND_SECS,
              'its key from the bigserial' if INSERT_KEY == 'serial' else
              'BENCH_INSERT_KEY=random: a random bigint key drawn by pgbench, no sequence'))
    L.append('')
    L.append('## Results')
    L.append('')
    L.append(md_table(HEADER, rows))
    L.append('')
    L.append('TPS from pgbench (without connection time); mean and p99 latency from '
             "pgbench's per-transaction log (`-l`); CPU seconds per 1,000 commits over all "
             'processes of the system (every postmaster, its live children and the children '
             "it has reaped, from /proc; pgbench's own CPU excluded), measured from before "
             'the run until the replicas had caught up after it. *drain s*: time after the '
             'run until every follower (raftpg) or standby (sync-rep) had applied everything. '
             'Ratios: raftpg / sync-rep (TPS above 1 and latency below 1 favour raftpg); '
             'TPS is the mean of the rounds\', latencies are over the transactions of all '
             'rounds, *by round* is the lowest and highest TPS ratio of one round\'s pair. '
             '*errors*: failed transactions plus aborted clients; a client that aborts '
             'stops for the rest of the run, so the TPS of such a row is understated.')
    L.append('')
    L.append('![TPS vs clients](%s)' % png_name)
    L.append('')
    L.append('Idle CPU of each system (heartbeats, walreceivers, ...), CPU seconds per '
             'second while no client ran: ' +
             ', '.join('%s %.3f' % (k, v) for k, v in idle.items()) + '.')
    L.append('')
    L.append('## Apply lag on raftpg followers at %d clients' % max(CLIENTS))
    L.append('')
    lag_rows = []
    for w in WORKLOADS:
        r = results.get((w, max(CLIENTS), 'raftpg'))
        if not r or not r.get('lag'):
            continue
        for name, lg in sorted(r['lag'].items()):
            lag_rows.append([w, name, str(lg['samples']), '%.0f' % lg['max'],
                             '%.1f' % lg['mean'], str(lg['max_own']),
                             fmt(r['drain_s'], '%.2f', 'stuck')])
    if lag_rows:
        L.append('Sampled every 0.2 s during the run: a follower\'s `applied_index` '
                 'against the leader\'s `commit_index` at the same moment (interpolated '
                 'between the leader\'s samples), and against its own `commit_index`. '
                 'The other systems\' servers were polled at the same rate during their '
                 'runs at this client count, so that all bear the same load of it.')
        L.append('')
        L.append(md_table(['workload', 'follower', 'samples', 'max lag (entries)',
                           'mean lag', 'max own commit - applied',
                           'drain after the run (s)'], lag_rows))
    else:
        L.append('No samples.')
    L.append('')
    L.append('## Failover (raftpg)')
    L.append('')
    if fo:
        times, details, fo_error = fo
        L.append('kill -9 of the leader\'s postmaster while pgbench runs the update '
                 'workload through it (8 clients); from then on an INSERT is tried on every node at once '
                 '(each node again 20 ms after its last answer, `connect_timeout=2`, '
                 '`raftpg.commit_timeout=3s`) until one commits. The killed server is '
                 'started again and catches up before the next repetition.')
        L.append('')
        if details:
            L.append(md_table(['#', 'killed leader', 'first write on',
                               'kill to first commit (s)', 'restart to caught up (s)'],
                              [[str(i + 1), d['killed'], d['new'], '%.2f' % d['seconds'],
                                fmt(d['rejoin_s'])] for i, d in enumerate(details)]))
            L.append('')
        if times:
            L.append('**Failover: median %.2f s, max %.2f s over %d repetitions.**' %
                     (statistics.median(times), max(times), len(times)))
        if fo_error:
            L.append('')
            L.append('**Failover stopped early:** ' + fo_error)
    else:
        L.append('Not run.')
    L.append('')
    L.append('Sync-rep has no automatic failover: without an HA manager (Patroni, '
             'pg_auto_failover, repmgr, ...) a standby stays a standby until someone '
             'promotes it, so its failover time is not measured here.')
    L.append('')
    L.append('## Catch-up of a new server')
    L.append('')
    if cu:
        L.append('A fresh 3-server raftpg cluster; a replicated table `big` '
                 '(id bigint, k int, v bigint, pad text of 32 characters) gets %d rows '
                 'through the leader in transactions of 50,000 rows (%.1f s, %.1f s until '
                 'the followers had applied them; %d log entries, table %.0f MB, '
                 'raftpg.log %.0f MB). Then a fourth server is created (initdb, start, '
                 'CREATE EXTENSION: %.2f s, not counted) and joins with '
                 '`raftpg.add_node` (which returns once it is promoted to voter); '
                 'caught up when its `applied_index` reaches the leader\'s '
                 '`commit_index`. Next to it: `pg_basebackup -X stream -c fast` of the '
                 'same rows from a fresh single PostgreSQL (database %.0f MB).' %
                 (cu['rows'], cu['load_s'], cu['load_applied_s'], cu['log_entries'],
                  cu['table_mb'], cu['log_mb'], cu['prepare_s'], cu['single_db_mb']))
        L.append('')
        L.append(md_table(['', 'seconds'],
                          [['raftpg: add_node returned', '%.2f' % cu['add_node_s']],
                           ['raftpg: new server fully caught up', '%.2f' % cu['caught_up_s']],
                           ['pg_basebackup -X stream (%.0f MB)' % cu['basebackup_mb'],
                            '%.2f' % cu['basebackup_s']]]))
    else:
        L.append('Not run.')
    L.append('')
    if raft_log_errors:
        L.append('## ERROR lines in the raftpg servers\' logs (benchmark cluster)')
        L.append('')
        L.append('Expected ones included: the failover probes\' writes on followers (25006, '
                 'also "no raftpg leader is known" during the election) and on the new leader '
                 'before it opens writes (40001).')
        L.append('')
        L.append(md_table(['count', 'message'],
                          [[str(n), m.replace('|', '\\|')] for m, n in raft_log_errors]))
        L.append('')
    if errors_seen:
        L.append('## Errors seen')
        L.append('')
        for e in errors_seen:
            L.append('- ' + e)
        L.append('')
    L.append('## Summary')
    L.append('')
    L.append('```')
    L.extend(summary_lines(results))
    L.append('```')
    L.append('')
    return '\n'.join(L)


# ---------------------------------------------------------------------------

def cleanup():
    for p in BACKGROUND:
        if p.poll() is None:
            try:
                p.kill()
                p.wait(10)
            except Exception:
                pass
    stopped_all = True
    for s in SERVERS:
        try:
            if not s.stop():
                stopped_all = False
                say('could not stop %s' % s.name)
        except Exception as e:
            stopped_all = False
            say('could not stop %s: %s' % (s.name, e))
    if WORK and os.path.isdir(WORK):
        if KEEP or not stopped_all:
            say('kept %s' % WORK)
        else:
            shutil.rmtree(WORK, ignore_errors=True)


def on_signal(signum, frame):
    raise KeyboardInterrupt('signal %d' % signum)


BIN = {}
SOCKDIR = None


def main():
    global WORK, SOCKDIR
    bindir = run([PG_CONFIG, '--bindir']).stdout.strip()
    for prog in ('initdb', 'pg_ctl', 'psql', 'pgbench', 'pg_basebackup', 'postgres'):
        BIN[prog] = os.path.join(bindir, prog)
        if not os.access(BIN[prog], os.X_OK):
            raise Fatal('%s is missing' % BIN[prog])
    if not shutil.which('gnuplot'):
        raise Fatal('gnuplot is missing (apt-get install gnuplot-nox)')

    started = datetime.datetime.utcnow()
    WORK = tempfile.mkdtemp(prefix='raftpg-bench.', dir=TMP_PARENT)
    if os.environ.get('BENCH_STATE'):
        with open(os.environ['BENCH_STATE'], 'w') as f:
            f.write(WORK + '\n')
    os.chmod(WORK, 0o755)
    SOCKDIR = os.path.join(WORK, 'sock')
    os.mkdir(SOCKDIR)
    if IS_ROOT:
        pw = pwd.getpwnam(OWNER)
        os.chown(WORK, pw.pw_uid, pw.pw_gid)
        os.chown(SOCKDIR, pw.pw_uid, pw.pw_gid)
    with open(os.path.join(WORK, '.gitignore'), 'w') as f:
        f.write('*\n')

    ports = free_ports(12)
    say('%s: workloads %s, clients %s, %d s per point and system in %d round(s), '
        '%d failover(s), %d rows of catch-up'
        % ('quick run' if QUICK else 'full run', ','.join(WORKLOADS),
           ','.join(map(str, CLIENTS)), SECS, ROUNDS, FAILOVER_REPS, CATCHUP_ROWS))
    say('work directory %s, ports %s' % (WORK, ','.join(map(str, ports))))
    facts = machine_facts()

    raft = setup_raft(ports[0:3])
    syncrep = setup_syncrep(ports[3:6])
    single = setup_single(ports[6])
    systems = [raft, syncrep, single]

    # idle CPU of each system
    time.sleep(1)
    idle0 = {s.key: s.cpu() for s in systems}
    time.sleep(3)
    idle = {s.key: (s.cpu() - idle0[s.key]) / 3.0 for s in systems}
    say('idle CPU s/s: ' + ', '.join('%s %.3f' % kv for kv in idle.items()))

    for s in systems:
        say('warm-up: %s, %d s' % (s.key, WARMUP_SECS))
        p = run(pgbench_cmd(WORKLOADS[0], 8, WARMUP_SECS, s.write_server().port),
                check=False, timeout=WARMUP_SECS + 120)
        if p.returncode != 0:
            raise Fatal('warm-up on %s failed: %s' % (s.key, p.stderr.strip()[-2000:]))
        s.drain()

    results = {}
    errors_seen = []
    # Each point is measured in ROUNDS rounds of SECS / ROUNDS seconds, the
    # systems taking turns in each and in the reverse order in every other
    # one, so that a drift of the machine's speed weighs on all alike.
    for w in WORKLOADS:
        for c in CLIENTS:
            rounds = {s.key: [] for s in systems}
            for rnd in range(ROUNDS):
                for s in (systems if rnd % 2 == 0 else systems[::-1]):
                    say('%s %s %d clients%s ...' %
                        (s.key, w, c, (', round %d of %d' % (rnd + 1, ROUNDS))
                         if ROUNDS > 1 else ''))
                    r = measure(s, w, c, ROUND_SECS,
                                sample_lag=(c == max(CLIENTS)),
                                rnd=rnd)
                    rounds[s.key].append(r)
                    say('  -> %s tps' % fmt(r['tps'], '%.0f'))
            for s in systems:
                r = combine(rounds[s.key])
                results[(w, c, s.key)] = r
                line = ('  %s %s %d clients: %s tps, mean %s ms, p99 %s ms, '
                        '%s CPU s/1k commits' %
                        (s.key, w, c, fmt(r['tps'], '%.0f'), fmt(r['mean_ms']),
                         fmt(r['p99_ms']), fmt(r['cpu_per_1k'], '%.3f')))
                if s.key != 'single':
                    line += ', drain %s s' % fmt(r['drain_s'], '%.2f', 'STUCK')
                if r.get('lag'):
                    line += ', max apply lag ' + ', '.join(
                        '%s %.0f' % (n, lg['max']) for n, lg in sorted(r['lag'].items()))
                say(line)
                if r['failed'] or r['aborted_clients'] or r['tps'] is None or r['first_error']:
                    msg = ('%s %s %d clients: %d failed transactions, %d aborted clients%s' %
                           (s.key, w, c, r['failed'], r['aborted_clients'],
                            (': ' + r['first_error']) if r['first_error'] else ''))
                    say('  !! ' + msg)
                    errors_seen.append(msg)
                if r.get('stuck'):
                    msg = '%s %s %d clients: after the run, %s' % (s.key, w, c, r['stuck'])
                    say('  !! ' + msg)
                    errors_seen.append(msg)

    # are the replicas identical? (after the last drain)
    for sysm in (raft, syncrep):
        sigs = set()
        for srv in sysm.servers:
            sigs.add(srv.sql('SELECT (SELECT sum(v) FROM public.t), '
                             '(SELECT count(*) FROM public.ins)'))
        if len(sigs) != 1:
            msg = '%s: the servers differ after the runs: %s' % (sysm.key, sorted(sigs))
            say('  !! ' + msg)
            errors_seen.append(msg)
        else:
            say('%s: all servers hold the same rows (sum(t.v), count(ins)) = (%s)'
                % (sysm.key, sigs.pop().replace('|', ', ')))

    fo = failover(raft, FAILOVER_REPS) if FAILOVER_REPS > 0 else None
    if fo and fo[0]:
        say('failover: median %.2f s, max %.2f s' % (statistics.median(fo[0]), max(fo[0])))
    if fo and fo[2]:
        errors_seen.append('failover ' + fo[2])
    raft_log_errors = log_errors(raft.servers)

    # the throughput systems are done: stop them so that catch-up runs alone
    for srv in raft.servers + syncrep.servers + single.servers:
        srv.stop()
    cu = catchup(ports[7:12], CATCHUP_ROWS) if CATCHUP_ROWS > 0 else None

    elapsed = time.monotonic() - T_START
    os.makedirs(RESULTS_DIR, exist_ok=True)
    stamp = started.strftime('%Y%m%d-%H%M%S')
    png = os.path.join(RESULTS_DIR, stamp + '.png')
    chart(results, png)
    md = report(results, idle, fo, cu, facts, started, elapsed, stamp + '.png', errors_seen,
                raft_log_errors)
    with open(os.path.join(RESULTS_DIR, stamp + '.md'), 'w') as f:
        f.write(md)
    shutil.copyfile(png, os.path.join(RESULTS_DIR, 'latest.png'))
    with open(os.path.join(RESULTS_DIR, 'latest.md'), 'w') as f:
        f.write(md.replace('](%s.png)' % stamp, '](latest.png)'))

    out = []
    rows = table_rows(results)
    out.append('')
    out.append(text_table(rows))
    out.append('')
    if fo and fo[0]:
        out.append('failover (raftpg, kill -9 of the leader to first commit): median %.2f s, '
                   'max %.2f s over %d' % (statistics.median(fo[0]), max(fo[0]), len(fo[0])))
    if cu:
        out.append('catch-up of a new server, %d rows: raftpg %.2f s (add_node %.2f s), '
                   'pg_basebackup %.2f s' % (cu['rows'], cu['caught_up_s'], cu['add_node_s'],
                                             cu['basebackup_s']))
    for e in errors_seen:
        out.append('error: ' + e)
    out.append('report: %s (and latest.md, latest.png)' % os.path.join(RESULTS_DIR, stamp + '.md'))
    out.append('elapsed: %.1f minutes' % (elapsed / 60.0))
    out.append('')
    out.extend(summary_lines(results))
    # the run is complete: what went wrong in the systems is in the report
    # and above; the caller prints out last, after the cleanup
    return 0, out


if __name__ == '__main__':
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    rc = 1
    final = []
    try:
        rc, final = main()
    except Fatal as e:
        print('bench: FAILED: %s' % e, file=sys.stderr, flush=True)
        for s in SERVERS:
            if os.path.exists(s.log):
                print('======== %s (last 20 lines)' % s.log, file=sys.stderr)
                print(tail(s.log, 20), file=sys.stderr)
    except KeyboardInterrupt as e:
        print('bench: interrupted (%s)' % e, file=sys.stderr, flush=True)
        rc = 130
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        cleanup()
    # the last lines of the output: the table, and one summary line per
    # workload and client count
    for line in final:
        print(line)
    sys.stdout.flush()
    sys.exit(rc)
