/*-------------------------------------------------------------------------
 *
 * transport.c
 *	  Messages between nodes: one non-blocking libpq connection per peer,
 *	  and the SQL function that receives them.
 *
 * Sending.  The node worker keeps one connection to every other member of
 * the configuration, opened with PQconnectStartParams and driven by
 * PQconnectPoll from the worker's wait loop, so that a slow or dead peer
 * never blocks it.  Once up, the worker sends CALL raftpg.stream(cluster
 * id) on it, and the peer's backend answers by switching the connection to
 * COPY BOTH mode (as a walsender does): from then on every loop iteration
 * sends each peer one CopyData message carrying all its messages of that
 * iteration (length-prefixed, binary), without waiting for anything.  No
 * statement, transaction or result per message: the receiving backend only
 * reads, copies and wakes.  An error, or the end of the copy, closes the
 * connection; a lost connection is retried with exponential back-off.
 * Messages for a peer that is not connected are dropped: Raft resends.
 *
 * Messages are one-way.  A reply travels on the replying node's own
 * connection to the sender, so each pair of nodes uses two connections and
 * every message is pushed, never pulled.
 *
 * Receiving.  raftpg.stream(cluster_id) is a procedure that runs in an
 * ordinary backend of the receiving server, under the peer's credentials,
 * so pg_hba.conf, SCRAM and TLS protect the cluster like any client; only
 * superusers and roles granted EXECUTE on it may call it.  It ends the
 * transaction CALL began (so that it holds no snapshot, and no xmin back,
 * for as long as the connection lasts), enters COPY BOTH mode and then, for
 * each CopyData, checks the cluster id and hands the bytes to the worker
 * through the inbox (mailbox.c), waking it.  raftpg.deliver(cluster_id,
 * messages) does the same for one batch per call.  Neither decodes: the
 * worker does, and a message that does not decode is logged and dropped
 * there, never trusted.
 *
 * Direct receiving.  Passing every message on costs a copy and one more
 * process to wake on each message's way.  So once a stream is set up, and
 * between two messages with nothing of the next one read, its backend
 * offers the connection's socket to the node worker (raftpg.h,
 * RaftpgDirectSlot): it sends the descriptor over a socket pair the
 * postmaster made for the purpose, and the worker then reads the CopyData
 * messages from the socket itself, in its own wait loop.  The backend
 * stays, reading nothing, until either side ends the stream; its session
 * (authentication, pg_stat_activity, termination) is the stream's as
 * before.  A connection encrypted by SSL or GSSAPI is never offered (the
 * worker could not decrypt it), nor any with raftpg.direct_receive off;
 * an offer the worker does not take within seconds is withdrawn, and the
 * backend passes the messages on as before.
 *
 * src/transport.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/socket.h>
#include <unistd.h>

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "libpq-fe.h"
#include "libpq/libpq.h"
#include "libpq/pqformat.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "pgstat.h"
#include "postmaster/interrupt.h"
#include "libpq/libpq-be.h"
#include "storage/fd.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "tcop/dest.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timeout.h"
#include "utils/timestamp.h"

#include "raftpg.h"
#include "mailbox.h"
#include "transport.h"

#define STREAM_SQL "CALL raftpg.stream(" UINT64_FORMAT ")"

/* back-off between connection attempts, in milliseconds */
#define BACKOFF_MIN_MS	100
#define BACKOFF_MAX_MS	5000

/* drop queued output above this many bytes per peer (a peer not reading) */
#define MAX_QUEUED_BYTES (64 * 1024 * 1024)
/* the largest CopyData a stream takes: one batch of queued output */
#define STREAM_MAX_MESSAGE (MAX_QUEUED_BYTES + 1024 * 1024)

static TransportPeer *peers = NULL;
static int	n_peers = 0;
static uint64 conn_serial = 0;	/* of the last connection opened */

bool		raftpg_direct_receive = true;

/*
 * Direct receiving (see raftpg.h, RaftpgDirectSlot).  The postmaster makes
 * a pair of connected sockets when it loads the library, and every child
 * inherits both: backends send a stream's client socket on [1], with
 * SCM_RIGHTS, and the node worker receives it on [0].  -1 if the pair could
 * not be made: then every stream is passed on through the inbox.
 */
static int	handoff_fds[2] = {-1, -1};

typedef struct HandoffMsg
{
	uint64		incarnation;	/* of shared memory: a message queued before
								 * a crash names no slot of today */
	uint64		serial;
	int32		slot;
} HandoffMsg;

/* room for the one descriptor a hand-off carries */
typedef union HandoffCtl
{
	char		buf[CMSG_SPACE(sizeof(int))];
	struct cmsghdr align;
} HandoffCtl;

static void
handoff_prepare(struct msghdr *msg, struct iovec *iov, HandoffMsg *m,
				HandoffCtl *ctl)
{
	memset(msg, 0, sizeof(*msg));
	memset(m, 0, sizeof(*m));
	memset(ctl, 0, sizeof(*ctl));
	iov->iov_base = m;
	iov->iov_len = sizeof(*m);
	msg->msg_iov = iov;
	msg->msg_iovlen = 1;
	msg->msg_control = ctl->buf;
	msg->msg_controllen = sizeof(ctl->buf);
}

/* the node worker's end of a stream it reads */
typedef struct DirectConn
{
	int			fd;
	int			slot;
	uint64		serial;
	bool		readable;		/* read the socket this pass */
	StringInfoData in;			/* bytes read, not yet a whole message */
} DirectConn;

static DirectConn direct_conns[RAFTPG_MAX_DIRECT];
static int	n_direct = 0;
static bool handoff_readable = true;
static uint64 empty_reads = 0;	/* reads of the sockets that found nothing */

/* a backend's hand-off: the slot it holds, or -1 */
static int	my_direct_slot = -1;
static uint64 my_direct_serial = 0;
static bool my_direct_exit_registered = false;
static MemoryContext TransportContext = NULL;

static void peer_disconnect(TransportPeer *p, const char *why);

void
TransportInit(void)
{
	if (TransportContext == NULL)
		TransportContext = AllocSetContextCreate(TopMemoryContext,
												 "raftpg transport",
												 ALLOCSET_DEFAULT_SIZES);
}

TransportPeer *
TransportPeers(int *n)
{
	*n = n_peers;
	return peers;
}

TransportPeer *
TransportGetPeer(uint64 id)
{
	int			i;

	for (i = 0; i < n_peers; i++)
		if (peers[i].id == id)
			return &peers[i];
	return NULL;
}

/*
 * Make the peer list match the configuration: connections to members that
 * stay (with an unchanged conninfo) are kept, others closed or opened
 * lazily by TransportPoll.
 */
void
TransportSetPeers(const raft_config *c, uint64 self)
{
	TransportPeer *np;
	int			n = 0;
	uint32		i;
	int			j;
	MemoryContext old = MemoryContextSwitchTo(TransportContext);

	np = palloc0(sizeof(TransportPeer) * Max(c->n, 1));
	for (i = 0; i < c->n; i++)
	{
		const raft_server *s = &c->servers[i];
		TransportPeer *keep = NULL;

		if (s->id == self)
			continue;
		for (j = 0; j < n_peers; j++)
			if (peers[j].id == s->id && peers[j].conninfo != NULL &&
				strcmp(peers[j].conninfo, s->address) == 0)
				keep = &peers[j];
		if (keep)
		{
			/* take the connection over; the old slot forgets it */
			np[n] = *keep;
			keep->conn = NULL;
			keep->conninfo = NULL;
			keep->out.data = NULL;
			strlcpy(np[n].name, s->name, sizeof(np[n].name));
		}
		else
		{
			np[n].id = s->id;
			strlcpy(np[n].name, s->name, sizeof(np[n].name));
			np[n].conninfo = pstrdup(s->address);
			np[n].state = PEER_DISCONNECTED;
			initStringInfo(&np[n].out);
		}
		n++;
	}
	/* whatever was not taken over is gone from the configuration */
	for (j = 0; j < n_peers; j++)
	{
		if (peers[j].conn)
		{
			PQfinish(peers[j].conn);
			peers[j].conn = NULL;
		}
		if (peers[j].out.data)
			pfree(peers[j].out.data);
		if (peers[j].conninfo)
			pfree(peers[j].conninfo);
	}
	if (peers)
		pfree(peers);
	peers = np;
	n_peers = n;
	MemoryContextSwitchTo(old);
}

static void
peer_disconnect(TransportPeer *p, const char *why)
{
	if (p->conn)
	{
		if (why && p->state == PEER_READY)
			ereport(LOG,
					(errmsg("raftpg: lost connection to node \"%s\": %s",
							p->name, why)));
		PQfinish(p->conn);
		p->conn = NULL;
	}
	p->state = PEER_DISCONNECTED;
	p->flush_pending = false;
	p->stream_ended = false;
	if (p->out.data)
		resetStringInfo(&p->out);
	p->backoff_ms = p->backoff_ms == 0 ? BACKOFF_MIN_MS :
		Min(p->backoff_ms * 2, BACKOFF_MAX_MS);
	p->next_attempt = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
												   p->backoff_ms);
}

/*
 * Check a conninfo string: NULL if it parses, else the error message
 * (palloc'd).
 */
char *
TransportCheckConninfo(const char *conninfo)
{
	char	   *err = NULL;
	PQconninfoOption *opts = PQconninfoParse(conninfo, &err);
	char	   *msg = NULL;

	if (opts == NULL)
	{
		msg = pstrdup(err ? err : "out of memory");
		if (err)
			PQfreemem(err);
		/* libpq's message ends with a newline */
		if (msg[0] && msg[strlen(msg) - 1] == '\n')
			msg[strlen(msg) - 1] = '\0';
		return msg;
	}
	PQconninfoFree(opts);
	return NULL;
}

/*
 * Open a connection to p: its conninfo, with raftpg.database as the
 * database unless the conninfo names one, and an application_name that
 * says who connects.
 */
/*
 * Start a non-blocking connection with conninfo, with raftpg.database as
 * the database unless the conninfo names one, and an application_name that
 * says who connects.  NULL when the conninfo does not parse.
 */
PGconn *
TransportConnectStart(const char *conninfo)
{
	PQconninfoOption *opts;
	PQconninfoOption *o;
	const char *keys[64];
	const char *vals[64];
	int			n = 0;
	bool		has_db = false;
	bool		has_timeout = false;
	char		appname[NAMEDATALEN + 16];
	char	   *err = NULL;
	PGconn	   *conn;

	opts = PQconninfoParse(conninfo, &err);
	if (opts == NULL)
	{
		if (err)
			PQfreemem(err);
		return NULL;
	}
	for (o = opts; o->keyword != NULL && n < 60; o++)
	{
		if (o->val == NULL || o->val[0] == '\0')
			continue;
		if (strcmp(o->keyword, "dbname") == 0)
			has_db = true;
		if (strcmp(o->keyword, "connect_timeout") == 0)
			has_timeout = true;
		keys[n] = o->keyword;
		vals[n] = o->val;
		n++;
	}
	if (!has_db)
	{
		keys[n] = "dbname";
		vals[n++] = raftpg_database;
	}
	if (!has_timeout)
	{
		keys[n] = "connect_timeout";
		vals[n++] = "10";
	}
	snprintf(appname, sizeof(appname), "raftpg %s", raftpg_node_name);
	keys[n] = "application_name";
	vals[n++] = appname;
	keys[n] = NULL;
	vals[n] = NULL;

	conn = PQconnectStartParams(keys, vals, 0);
	PQconninfoFree(opts);
	return conn;
}

static void
peer_connect(TransportPeer *p)
{
	p->conn = TransportConnectStart(p->conninfo);
	p->conn_serial = ++conn_serial;
	if (p->conn == NULL || PQstatus(p->conn) == CONNECTION_BAD)
	{
		peer_disconnect(p, NULL);
		return;
	}
	p->state = PEER_CONNECTING;
	p->poll_status = PGRES_POLLING_WRITING;
}

/* the connection is up: ask the peer to stream */
static void
peer_start_stream(TransportPeer *p, uint64 cluster_id)
{
	char		sql[64];

	snprintf(sql, sizeof(sql), STREAM_SQL, cluster_id);
	if (PQsetnonblocking(p->conn, 1) != 0 ||
		PQsendQuery(p->conn, sql) != 1)
	{
		peer_disconnect(p, PQerrorMessage(p->conn));
		return;
	}
	p->flush_pending = true;
	p->state = PEER_STARTING;
}

/* the peer's answer to CALL raftpg.stream(): COPY BOTH, or an error */
static void
peer_stream_started(TransportPeer *p)
{
	PGresult   *res;

	if (PQconsumeInput(p->conn) != 1)
	{
		peer_disconnect(p, PQerrorMessage(p->conn));
		return;
	}
	if (PQisBusy(p->conn))
		return;
	res = PQgetResult(p->conn);
	if (res == NULL || PQresultStatus(res) != PGRES_COPY_BOTH)
	{
		char	   *msg = pstrdup(res ? PQresultErrorMessage(res) :
								  "the connection ended");

		if (res)
			PQclear(res);
		/* a peer that cannot stream says why; say it too */
		ereport(LOG,
				(errmsg("raftpg: node \"%s\" refused the message stream: %s",
						p->name, msg)));
		peer_disconnect(p, NULL);
		pfree(msg);
		return;
	}
	PQclear(res);
	p->state = PEER_READY;
	p->readable = true;
	p->backoff_ms = 0;
	ereport(LOG,
			(errmsg("raftpg: connected to node \"%s\"", p->name)));
}

/* queue one encoded message for p */
void
TransportQueue(TransportPeer *p, const uint8 *msg, size_t len)
{
	uint32		l = (uint32) len;

	if (p->state != PEER_READY || p->out.len + len > MAX_QUEUED_BYTES)
	{
		p->dropped++;
		return;
	}
	appendBinaryStringInfo(&p->out, (const char *) &l, sizeof(uint32));
	appendBinaryStringInfo(&p->out, (const char *) msg, len);
	p->queued++;
}

/* push what libpq holds for p onto the socket, as far as it takes it */
static void
peer_flush(TransportPeer *p)
{
	int			r;

	if (!p->flush_pending)
		return;
	r = PQflush(p->conn);
	if (r < 0)
		peer_disconnect(p, PQerrorMessage(p->conn));
	else
		p->flush_pending = (r == 1);
	/* a send that could not finish may have read input: look at it */
	if (r == 1)
		p->readable = true;
}

/* send what is queued for every peer, one CopyData message each */
void
TransportFlush(void)
{
	int			i;

	for (i = 0; i < n_peers; i++)
	{
		TransportPeer *p = &peers[i];

		if (p->state != PEER_READY)
			continue;

		/*
		 * What libpq could not send yet stays with it, and what was queued
		 * since waits in p->out, where MAX_QUEUED_BYTES bounds it: libpq
		 * itself would take any amount (in nonblocking mode
		 * PQputCopyData() grows its buffer).
		 */
		peer_flush(p);
		if (p->state != PEER_READY || p->flush_pending)
			continue;
		if (p->out.len > 0)
		{
			int			r = PQputCopyData(p->conn, p->out.data, p->out.len);

			if (r < 0)
			{
				peer_disconnect(p, PQerrorMessage(p->conn));
				continue;
			}
			if (r == 1)
			{
				p->bytes_out += p->out.len;
				p->calls_out++;
				resetStringInfo(&p->out);
			}
			/* r == 0: libpq's buffer is full; the batch waits for a flush */
			p->flush_pending = true;
		}
		peer_flush(p);
	}
}

/*
 * The receiving backend sends nothing while it streams: anything that
 * arrives is the end of the stream (an error, a shutdown), and closes the
 * connection.
 */
static void
peer_consume(TransportPeer *p)
{
	char	   *buf = NULL;
	int			r;
	PGresult   *res;
	char	   *msg;

	if (PQconsumeInput(p->conn) != 1)
	{
		peer_disconnect(p, PQerrorMessage(p->conn));
		return;
	}
	if (!p->stream_ended)
	{
		r = PQgetCopyData(p->conn, &buf, 1);
		if (buf)
			PQfreemem(buf);
		if (r == 0)
			empty_reads++;
		if (r >= 0)
			return;				/* nothing, or data we do not expect */
		if (r == -2)
		{
			peer_disconnect(p, PQerrorMessage(p->conn));
			return;
		}
		p->stream_ended = true;
	}
	if (PQisBusy(p->conn))
		return;					/* the copy ended; its result is to come */
	res = PQgetResult(p->conn);
	msg = pstrdup(res && PQresultStatus(res) == PGRES_FATAL_ERROR ?
				  PQresultErrorMessage(res) : "the peer ended the message stream");
	if (res)
		PQclear(res);
	peer_disconnect(p, msg);
	pfree(msg);
}

/*
 * The sockets to wait for, into w (room for TRANSPORT_MAX_WAIT): one per
 * peer and, if direct (the worker runs a core and reads streams), the
 * hand-off socket and the streams the worker reads itself.  Returns how
 * many, and sets *reconnect to the earliest time a reconnection is due (0
 * if none).  A socket is "settled" once its
 * connection is up: until then libpq may close it and open another under
 * the same number, so a wait set must not keep it from one pass to the
 * next.
 */
int
TransportWaitSockets(TransportWait *w, bool direct, TimestampTz *reconnect)
{
	int			i;
	int			n = 0;
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz next = 0;

	Assert(n_peers <= RAFT_MAX_SERVERS);	/* a configuration's servers */
	for (i = 0; i < n_peers; i++)
	{
		TransportPeer *p = &peers[i];

		if (p->state == PEER_DISCONNECTED && p->next_attempt > now)
		{
			if (next == 0 || p->next_attempt < next)
				next = p->next_attempt;
			continue;
		}
		if (p->conn == NULL || PQsocket(p->conn) < 0)
			continue;
		w[n].sock = PQsocket(p->conn);
		if (p->state == PEER_CONNECTING)
			w[n].events = p->poll_status == PGRES_POLLING_READING ?
				WL_SOCKET_READABLE : WL_SOCKET_WRITEABLE;
		else
			w[n].events = WL_SOCKET_READABLE |
				(p->flush_pending ? WL_SOCKET_WRITEABLE : 0);
		w[n].conn_serial = p->conn_serial;
		w[n].settled = p->state != PEER_CONNECTING;
		w[n].peer = p;
		n++;
	}
	if (direct && handoff_fds[0] >= 0)
	{
		w[n].sock = handoff_fds[0];
		w[n].events = WL_SOCKET_READABLE;
		w[n].conn_serial = PG_UINT64_MAX;
		w[n].settled = true;
		w[n].peer = NULL;
		n++;
	}
	for (i = 0; direct && i < n_direct; i++)
	{
		w[n].sock = direct_conns[i].fd;
		w[n].events = WL_SOCKET_READABLE;
		/* not a peer's serial: those count from 1 in another series */
		w[n].conn_serial = direct_conns[i].serial | (UINT64CONST(1) << 63);
		w[n].settled = true;
		w[n].peer = NULL;
		n++;
	}
	*reconnect = next;
	return n;
}

/* advance every connection: connect, start streams, read, flush */
void
TransportPoll(uint64 cluster_id)
{
	int			i;
	TimestampTz now = GetCurrentTimestamp();

	for (i = 0; i < n_peers; i++)
	{
		TransportPeer *p = &peers[i];

		switch (p->state)
		{
			case PEER_DISCONNECTED:
				if (p->next_attempt <= now)
					peer_connect(p);
				break;
			case PEER_CONNECTING:
				p->poll_status = PQconnectPoll(p->conn);
				if (p->poll_status == PGRES_POLLING_FAILED)
					peer_disconnect(p, PQerrorMessage(p->conn));
				else if (p->poll_status == PGRES_POLLING_OK)
				{
					peer_start_stream(p, cluster_id);
					if (p->state == PEER_STARTING)
						peer_flush(p);
				}
				break;
			case PEER_STARTING:
				peer_flush(p);
				if (p->state == PEER_STARTING)
					peer_stream_started(p);
				break;
			case PEER_READY:
				if (p->readable)
				{
					p->readable = false;
					peer_consume(p);
				}
				if (p->state == PEER_READY)
					peer_flush(p);
				break;
		}
	}
}

/*
 * Which sockets a pass reads.  A read that finds nothing costs a system
 * call like any other, and on most passes most sockets have nothing: a
 * follower's pass reads the leader's stream, a leader's the stream of the
 * one follower that answered.  So the node worker says which sockets its
 * wait found readable (TransportReadable), or that it cannot tell
 * (TransportAllReadable: it did not wait, or it is time for the periodic
 * look at every socket), and the pass reads just those.  A socket newly
 * taken or connected counts as readable.  Nothing is lost by skipping one:
 * what it holds keeps it readable, so the next wait reports it at once.
 */
void
TransportReadable(pgsocket sock)
{
	int			i;

	for (i = 0; i < n_peers; i++)
		if (peers[i].conn != NULL && PQsocket(peers[i].conn) == sock)
			peers[i].readable = true;
	if (sock == handoff_fds[0])
		handoff_readable = true;
	for (i = 0; i < n_direct; i++)
		if (direct_conns[i].fd == sock)
			direct_conns[i].readable = true;
}

uint64
TransportEmptyReads(void)
{
	return empty_reads;
}

void
TransportAllReadable(void)
{
	int			i;

	for (i = 0; i < n_peers; i++)
		peers[i].readable = true;
	handoff_readable = true;
	for (i = 0; i < n_direct; i++)
		direct_conns[i].readable = true;
}

void
TransportShutdown(void)
{
	int			i;

	for (i = 0; i < n_peers; i++)
		if (peers[i].conn)
		{
			PQfinish(peers[i].conn);
			peers[i].conn = NULL;
		}
}

/* ----------
 * Direct receiving: the node worker's side
 * ----------
 */

/* in the postmaster, from _PG_init(): make the hand-off pair */
void
TransportDirectInit(void)
{
#ifndef EXEC_BACKEND
	int			fds[2];

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0,
				   fds) != 0)
	{
		ereport(LOG,
				(errcode_for_socket_access(),
				 errmsg("raftpg could not create a socket pair, peers' messages will be passed on by the receiving backends: %m")));
		return;
	}
	handoff_fds[0] = fds[0];
	handoff_fds[1] = fds[1];
#endif							/* every child would make its own pair */
}

static Latch *
proc_latch(int procno)
{
	return &ProcGlobal->allProcs[procno].procLatch;
}

/* stop reading direct_conns[i]: close our end, tell the backend */
static void
direct_close(int i)
{
	DirectConn *c = &direct_conns[i];
	RaftpgDirectSlot *s = &RaftpgShmem->direct[c->slot];
	Latch	   *latch = NULL;

	close(c->fd);
	ReleaseExternalFD();
	LWLockAcquire(&RaftpgShmem->lock, LW_EXCLUSIVE);
	if (s->serial == c->serial)
	{
		if (s->state == RAFTPG_DIRECT_TAKEN)
		{
			s->state = RAFTPG_DIRECT_CLOSED_BY_WORKER;
			latch = proc_latch(s->procno);
		}
		else if (s->state == RAFTPG_DIRECT_CLOSED_BY_BACKEND)
			s->state = RAFTPG_DIRECT_FREE;
	}
	LWLockRelease(&RaftpgShmem->lock);
	if (latch)
		SetLatch(latch);
	pfree(c->in.data);
	direct_conns[i] = direct_conns[--n_direct];
}

/*
 * Take the sockets backends handed over since the last call.  One that no
 * longer is on offer (the backend gave up waiting, or is gone) is closed
 * again: the backend reads it, or nobody does.  One offered for another
 * cluster than cluster_id (this node's now: it may have changed since the
 * offer) is refused, and its backend reads on and refuses the messages.
 */
void
TransportDirectAccept(uint64 cluster_id)
{
	bool		first = true;	/* nothing received yet */

	if (handoff_fds[0] < 0 || !handoff_readable)
		return;
	handoff_readable = false;
	for (;;)
	{
		HandoffMsg	m;
		struct iovec iov;
		struct msghdr msg;
		HandoffCtl	ctl;
		struct cmsghdr *cm;
		ssize_t		r;
		int			fd = -1;
		bool		ok = false;
		bool		fits;
		int			procno = 0;
		RaftpgDirectSlot *s;

		handoff_prepare(&msg, &iov, &m, &ctl);
		r = recvmsg(handoff_fds[0], &msg, MSG_CMSG_CLOEXEC);
		if (r < 0)
		{
			if (errno == EINTR)
				continue;
			if (first)
				empty_reads++;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				ereport(LOG,
						(errcode_for_socket_access(),
						 errmsg("raftpg could not receive a stream from a backend: %m")));
			return;
		}
		first = false;
		/* one descriptor is expected; close any other */
		for (cm = CMSG_FIRSTHDR(&msg); cm != NULL; cm = CMSG_NXTHDR(&msg, cm))
		{
			int			nfds;
			int			k;

			if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
				continue;
			nfds = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
			for (k = 0; k < nfds; k++)
			{
				int			one;

				memcpy(&one, CMSG_DATA(cm) + k * sizeof(int), sizeof(int));
				if (fd < 0)
					fd = one;
				else
					close(one);
			}
		}
		if (fd < 0)
			continue;
		if (r != sizeof(m) || (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) ||
			m.incarnation != RaftpgShmem->incarnation ||
			m.slot < 0 || m.slot >= RAFTPG_MAX_DIRECT)
		{
			close(fd);
			continue;
		}

		/*
		 * Everything that can fail comes before the slot is taken: a
		 * socket the worker cannot read stays the backend's, which sees its
		 * offer refused (FREE) and reads on.
		 */
		fits = n_direct < RAFTPG_MAX_DIRECT && pg_set_noblock(fd) &&
			AcquireExternalFD();
		if (fits)
		{
			MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

			initStringInfo(&direct_conns[n_direct].in);
			MemoryContextSwitchTo(old);
		}
		s = &RaftpgShmem->direct[m.slot];
		LWLockAcquire(&RaftpgShmem->lock, LW_EXCLUSIVE);
		if (s->state == RAFTPG_DIRECT_OFFERED && s->serial == m.serial)
		{
			if (s->cluster_id != cluster_id)
				fits = false;
			s->state = fits ? RAFTPG_DIRECT_TAKEN : RAFTPG_DIRECT_FREE;
			procno = s->procno;
			ok = true;
		}
		LWLockRelease(&RaftpgShmem->lock);
		if (ok)
			SetLatch(proc_latch(procno));
		if (!ok || !fits)
		{
			if (fits)
			{
				pfree(direct_conns[n_direct].in.data);
				ReleaseExternalFD();
			}
			close(fd);
			continue;
		}
		direct_conns[n_direct].fd = fd;
		direct_conns[n_direct].slot = m.slot;
		direct_conns[n_direct].serial = m.serial;
		direct_conns[n_direct].readable = true;
		n_direct++;
	}
}

/*
 * The whole messages of direct_conns[i]'s buffer, from its start: returns
 * false if the stream is to end (CopyDone, Terminate, a protocol
 * violation).  Bytes of an unfinished message stay in the buffer.
 */
static bool
direct_messages(DirectConn *c, void (*batch) (const char *data, uint32 len))
{
	int			pos = 0;
	bool		ok = true;

	while (c->in.len - pos >= 5)
	{
		char		type = c->in.data[pos];
		uint32		len;

		memcpy(&len, c->in.data + pos + 1, sizeof(len));
		len = pg_ntoh32(len);
		if (len < 4 || len > STREAM_MAX_MESSAGE + 4)
		{
			ereport(LOG,
					(errcode(ERRCODE_PROTOCOL_VIOLATION),
					 errmsg("raftpg: closed a message stream: a message of %u bytes", len)));
			ok = false;
			break;
		}
		if ((uint32) (c->in.len - pos - 1) < len)
			break;
		if (type == 'd')
			batch(c->in.data + pos + 5, len - 4);
		else if (type != 'H' && type != 'S')
		{
			/* CopyDone, Terminate or anything else: the end */
			ok = false;
			break;
		}
		pos += 1 + len;
	}
	if (pos > 0)
	{
		memmove(c->in.data, c->in.data + pos, c->in.len - pos);
		c->in.len -= pos;
	}
	return ok;
}

/* at most this many bytes are read from one stream in one pass */
#define DIRECT_READ_PER_PASS	(4 * 1024 * 1024)

/*
 * Read every stream the worker holds, handing each CopyData to batch();
 * close the streams that ended, on either side.
 */
void
TransportDirectRead(void (*batch) (const char *data, uint32 len))
{
	int			i = 0;

	while (i < n_direct)
	{
		DirectConn *c = &direct_conns[i];
		bool		end = false;
		Size		got = 0;

		if (RaftpgShmem->direct[c->slot].state == RAFTPG_DIRECT_CLOSED_BY_BACKEND &&
			RaftpgShmem->direct[c->slot].serial == c->serial)
		{
			direct_close(i);
			continue;
		}
		while (c->readable && !end && got < DIRECT_READ_PER_PASS)
		{
			ssize_t		r;
			size_t		room;

			enlargeStringInfo(&c->in, 65536);
			room = c->in.maxlen - c->in.len - 1;
			r = recv(c->fd, c->in.data + c->in.len, room, 0);
			if (r < 0)
			{
				if (errno == EINTR)
					continue;
				if (got == 0)
					empty_reads++;
				if (errno != EAGAIN && errno != EWOULDBLOCK)
					end = true;
				break;
			}
			if (r == 0)
			{
				end = true;
				break;
			}
			c->in.len += r;
			got += r;
			if (!direct_messages(c, batch))
				end = true;
			/* less than there was room for: nothing is left to read now */
			if ((size_t) r < room)
				break;
		}
		/* stopped at the cap: more is there, read it next pass */
		c->readable = got >= DIRECT_READ_PER_PASS;
		if (end)
			direct_close(i);
		else
		{
			/* give back what a large message made the buffer grow to */
			if (c->in.maxlen > 1024 * 1024 && c->in.len < 65536)
			{
				MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);
				StringInfoData small;

				initStringInfo(&small);
				appendBinaryStringInfo(&small, c->in.data, c->in.len);
				pfree(c->in.data);
				c->in = small;
				MemoryContextSwitchTo(old);
			}
			i++;
		}
	}
}

/*
 * Whether the worker takes streams: only while it runs a core (it reads
 * them only then).  Turning it off closes every stream it reads, so that
 * their backends end their sessions and the peers reconnect.
 */
void
TransportDirectAccepting(bool on)
{
	LWLockAcquire(&RaftpgShmem->lock, LW_EXCLUSIVE);
	RaftpgShmem->direct_accepting = on;
	LWLockRelease(&RaftpgShmem->lock);
	if (!on)
		while (n_direct > 0)
			direct_close(n_direct - 1);
}

/*
 * The worker exits: close every stream it reads, and free the slots whose
 * backends are gone.
 */
void
TransportDirectShutdown(void)
{
	int			i;
	Latch	   *wake[RAFTPG_MAX_DIRECT];
	int			nwake = 0;

	while (n_direct > 0)
		direct_close(n_direct - 1);
	LWLockAcquire(&RaftpgShmem->lock, LW_EXCLUSIVE);
	if (RaftpgShmem->worker_pid == MyProcPid)
	{
		RaftpgShmem->direct_accepting = false;
		for (i = 0; i < RAFTPG_MAX_DIRECT; i++)
		{
			RaftpgDirectSlot *s = &RaftpgShmem->direct[i];

			if (s->state == RAFTPG_DIRECT_CLOSED_BY_BACKEND)
				s->state = RAFTPG_DIRECT_FREE;
			else if (s->state == RAFTPG_DIRECT_TAKEN)
			{
				/* taken, but not among ours: an error came in between */
				s->state = RAFTPG_DIRECT_CLOSED_BY_WORKER;
				wake[nwake++] = proc_latch(s->procno);
			}
		}
	}
	LWLockRelease(&RaftpgShmem->lock);
	for (i = 0; i < nwake; i++)
		SetLatch(wake[i]);
}

/* ----------
 * Receiving
 * ----------
 */

/*
 * Refuse messages of another cluster than this node's; returns the node
 * worker's latch (NULL when it is not running).
 */
static Latch *
check_cluster(int64 cluster_id)
{
	int64		own;
	Latch	   *latch;

	LWLockAcquire(&RaftpgShmem->lock, LW_SHARED);
	own = RaftpgShmem->cluster_id;
	latch = RaftpgShmem->worker_latch;
	LWLockRelease(&RaftpgShmem->lock);

	if (own != 0 && own != cluster_id)
		ereport(ERROR,
				(errcode(ERRCODE_PROTOCOL_VIOLATION),
				 errmsg("raftpg message for cluster " INT64_FORMAT " reached a node of cluster " INT64_FORMAT,
						cluster_id, own),
				 errhint("Check the conninfo of the nodes of both clusters.")));
	return latch;
}

/*
 * Hand one batch of messages for cluster_id to the worker.  Returns false
 * if the inbox had no room (the batch is dropped and counted).
 */
static bool
receive_batch(int64 cluster_id, const char *data, Size len)
{
	Latch	   *latch = check_cluster(cluster_id);

	if (!MailboxPut(RaftpgInbox, NULL, 0, data, len))
		return false;
	if (latch)
		SetLatch(latch);
	return true;
}

/* raftpg.deliver(cluster_id bigint, messages bytea): one batch */
PG_FUNCTION_INFO_V1(raftpg_deliver);

Datum
raftpg_deliver(PG_FUNCTION_ARGS)
{
	int64		cluster_id = PG_GETARG_INT64(0);
	bytea	   *msgs = PG_GETARG_BYTEA_PP(1);

	RaftpgCheckPreloaded();
	PG_RETURN_BOOL(receive_batch(cluster_id, VARDATA_ANY(msgs),
								 VARSIZE_ANY_EXHDR(msgs)));
}

/* ----------
 * Direct receiving: the backend's side
 * ----------
 */

/* before_shmem_exit: let go of the slot, and of the stream with it */
static void
stream_direct_exit(int code, Datum arg)
{
	RaftpgDirectSlot *s;
	Latch	   *latch = NULL;

	if (my_direct_slot < 0)
		return;
	s = &RaftpgShmem->direct[my_direct_slot];
	LWLockAcquire(&RaftpgShmem->lock, LW_EXCLUSIVE);
	if (s->serial == my_direct_serial)
	{
		if (s->state == RAFTPG_DIRECT_TAKEN)
		{
			s->state = RAFTPG_DIRECT_CLOSED_BY_BACKEND;
			latch = RaftpgShmem->worker_latch;
		}
		else
			s->state = RAFTPG_DIRECT_FREE;
	}
	LWLockRelease(&RaftpgShmem->lock);
	my_direct_slot = -1;
	if (latch)
		SetLatch(latch);
}

/*
 * Offer this session's socket to the node worker; true if it was sent.
 * Only between two messages, with nothing of the next one read yet, and
 * only on a plain connection: the worker reads the protocol's bytes, it
 * cannot decrypt them.
 */
static bool
stream_offer(int64 cluster_id)
{
	RaftpgDirectSlot *s = NULL;
	Latch	   *latch;
	HandoffMsg	m;
	struct iovec iov;
	struct msghdr msg;
	HandoffCtl	ctl;
	struct cmsghdr *cm;
	int			i;
	ssize_t		r;

	if (!raftpg_direct_receive || handoff_fds[1] < 0 || MyProcPort == NULL ||
		MyProcPort->sock == PGINVALID_SOCKET || my_direct_slot >= 0)
		return false;
#ifdef USE_SSL
	if (MyProcPort->ssl_in_use)
		return false;
#endif
#ifdef ENABLE_GSS
	if (be_gssapi_get_enc(MyProcPort))
		return false;
#endif
	if (!my_direct_exit_registered)
	{
		before_shmem_exit(stream_direct_exit, (Datum) 0);
		my_direct_exit_registered = true;
	}

	LWLockAcquire(&RaftpgShmem->lock, LW_EXCLUSIVE);
	latch = RaftpgShmem->worker_latch;
	if (latch != NULL && RaftpgShmem->direct_accepting &&
		RaftpgShmem->cluster_id == (uint64) cluster_id)
	{
		for (i = 0; i < RAFTPG_MAX_DIRECT; i++)
			if (RaftpgShmem->direct[i].state == RAFTPG_DIRECT_FREE)
			{
				s = &RaftpgShmem->direct[i];
				s->state = RAFTPG_DIRECT_OFFERED;
				s->procno = MyProc->pgprocno;
				s->serial = ++RaftpgShmem->direct_serial;
				s->cluster_id = (uint64) cluster_id;
				my_direct_slot = i;
				my_direct_serial = s->serial;
				break;
			}
	}
	LWLockRelease(&RaftpgShmem->lock);
	if (s == NULL)
		return false;

	handoff_prepare(&msg, &iov, &m, &ctl);
	m.incarnation = RaftpgShmem->incarnation;
	m.serial = my_direct_serial;
	m.slot = my_direct_slot;
	cm = CMSG_FIRSTHDR(&msg);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &MyProcPort->sock, sizeof(int));
	do
		r = sendmsg(handoff_fds[1], &msg, MSG_NOSIGNAL);
	while (r < 0 && errno == EINTR);
	if (r != sizeof(m))
	{
		/* the worker will not take it: nothing was sent */
		stream_direct_exit(0, (Datum) 0);
		return false;
	}
	SetLatch(latch);
	return true;
}

/* give up an offer the worker did not take in this long */
#define DIRECT_OFFER_TIMEOUT_MS 5000
/*
 * Offer again this often while the stream is passed on: the worker may not
 * run yet, or not be a member, or not have taken the last offer.
 */
#define DIRECT_OFFER_INTERVAL_MS 1000

/*
 * After an offer: wait until the worker ends the stream, and end the
 * session then.  Returns only if the worker did not take the socket (it
 * refused it, or did not take it in time): the backend reads on.
 *
 * Once the socket was sent, nothing may return this session to reading
 * while the worker may read: a cancel waits until the offer is settled,
 * and an error ends the session.
 */
static void
stream_direct_wait(void)
{
	TimestampTz offered = GetCurrentTimestamp();
	bool		taken = false;

	HOLD_CANCEL_INTERRUPTS();
	PG_TRY();
	{
		for (;;)
		{
			RaftpgDirectSlot *s;
			RaftpgDirectState st;
			bool		withdrawn = false;

			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 1000, PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
			CHECK_FOR_INTERRUPTS();

			LWLockAcquire(&RaftpgShmem->lock, LW_EXCLUSIVE);
			s = &RaftpgShmem->direct[my_direct_slot];
			st = s->state;
			if (s->serial != my_direct_serial || st == RAFTPG_DIRECT_FREE)
			{
				/* the worker refused it (and the slot may be another's) */
				my_direct_slot = -1;
				withdrawn = true;
			}
			else if (st == RAFTPG_DIRECT_OFFERED &&
					 TimestampDifferenceExceeds(offered, GetCurrentTimestamp(),
												DIRECT_OFFER_TIMEOUT_MS))
			{
				s->state = RAFTPG_DIRECT_FREE;
				my_direct_slot = -1;
				withdrawn = true;
			}
			LWLockRelease(&RaftpgShmem->lock);

			if (withdrawn)
				break;
			if (st == RAFTPG_DIRECT_CLOSED_BY_WORKER)
				proc_exit(0);	/* stream_direct_exit() frees the slot */
			if (st == RAFTPG_DIRECT_TAKEN && !taken)
			{
				taken = true;
				pgstat_report_activity(STATE_RUNNING,
									   "raftpg: receiving messages, read by the node worker");
			}
		}
	}
	PG_CATCH();
	{
		/* the socket may be the worker's: report, and end the session */
		HOLD_INTERRUPTS();
		EmitErrorReport();
		proc_exit(1);
	}
	PG_END_TRY();
	RESUME_CANCEL_INTERRUPTS();
}

/*
 * CALL raftpg.stream(cluster_id bigint): every CopyData message the client
 * sends is one batch, until it ends the copy or the connection.
 */
PG_FUNCTION_INFO_V1(raftpg_stream);

Datum
raftpg_stream(PG_FUNCTION_ARGS)
{
	int64		cluster_id;
	StringInfoData buf;
	TimestampTz last_offer = 0;

	RaftpgCheckPreloaded();
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("the cluster id of raftpg.stream() must not be null")));
	cluster_id = PG_GETARG_INT64(0);
	if (fcinfo->context == NULL || !IsA(fcinfo->context, CallContext) ||
		castNode(CallContext, fcinfo->context)->atomic)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TRANSACTION_TERMINATION),
				 errmsg("raftpg.stream() must be called by CALL outside a transaction block")));
	if (whereToSendOutput != DestRemote)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("raftpg.stream() needs a client connection")));
	/* refuse another cluster's peer before anything is streamed */
	(void) check_cluster(cluster_id);

	/*
	 * The call lasts as long as the connection: end the transaction CALL
	 * began, and with it the portal's snapshot, so that this backend holds
	 * no xmin back from vacuum.  The transaction SPI starts in its place
	 * takes no snapshot: nothing below reads a table.
	 */
	if (SPI_connect_ext(SPI_OPT_NONATOMIC) != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect_ext failed");
	SPI_commit();
	SPI_finish();
	/* a statement_timeout would end the stream, and the peer reconnect */
	if (get_timeout_active(STATEMENT_TIMEOUT))
		disable_timeout(STATEMENT_TIMEOUT, false);
	pgstat_report_activity(STATE_RUNNING, "raftpg: receiving messages");

	/* CopyBothResponse: binary, no columns */
	pq_beginmessage(&buf, 'W');
	pq_sendbyte(&buf, 1);
	pq_sendint16(&buf, 0);
	pq_endmessage(&buf);
	pq_flush();

	initStringInfo(&buf);
	for (;;)
	{
		unsigned char c;
		int			r;

		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			/* a check hook's catalog lookup must not pin an xmin */
			InvalidateCatalogSnapshot();
		}

		/*
		 * Between two messages, with none of the next one buffered: the
		 * node worker can read the rest of the stream itself.
		 */
		if (!pq_buffer_has_data() &&
			TimestampDifferenceExceeds(last_offer, GetCurrentTimestamp(),
									   DIRECT_OFFER_INTERVAL_MS))
		{
			if (stream_offer(cluster_id))
				stream_direct_wait();	/* returns if not taken */
			last_offer = GetCurrentTimestamp();
		}

		/*
		 * Wait for the next message like a walsender: on the socket and the
		 * latch, so that cancels, terminations and procsignal barriers
		 * (DROP DATABASE waits for every backend to absorb one) are served
		 * even on a stream that stays quiet -- one between two followers
		 * carries nothing until one of them campaigns.
		 */
		CHECK_FOR_INTERRUPTS();
		pq_startmsgread();
		r = pq_getbyte_if_available(&c);
		if (r == 0)
		{
			WaitEvent	event;

			pq_endmsgread();
			ModifyWaitEvent(FeBeWaitSet, FeBeWaitSetSocketPos,
							WL_SOCKET_READABLE, NULL);
			/* wake up to offer the stream again, if that may do */
			if (WaitEventSetWait(FeBeWaitSet,
								 raftpg_direct_receive ? DIRECT_OFFER_INTERVAL_MS : -1,
								 &event, 1, WAIT_EVENT_CLIENT_READ) == 0)
				continue;
			if (event.events & WL_POSTMASTER_DEATH)
				ereport(FATAL,
						(errcode(ERRCODE_ADMIN_SHUTDOWN),
						 errmsg("terminating connection due to unexpected postmaster exit")));
			if (event.events & WL_LATCH_SET)
				ResetLatch(MyLatch);
			continue;
		}
		if (r < 0 || pq_getmessage(&buf, STREAM_MAX_MESSAGE) != 0)
		{
			/* the peer went away: nobody to answer */
			proc_exit(0);
		}
		switch (c)
		{
			case 'd':			/* CopyData: one batch */
				(void) receive_batch(cluster_id, buf.data, buf.len);
				break;
			case 'H':			/* Flush, Sync: nothing to do, as in COPY */
			case 'S':
				break;
			case 'c':			/* CopyDone: answer it, and end the call */
				pq_putemptymessage('c');
				pq_flush();
				pfree(buf.data);
				PG_RETURN_VOID();
			case 'X':			/* Terminate */
				proc_exit(0);
				break;
			default:
				ereport(FATAL,
						(errcode(ERRCODE_PROTOCOL_VIOLATION),
						 errmsg("unexpected message type 0x%02X in a raftpg message stream", c)));
		}
		resetStringInfo(&buf);
	}
}
