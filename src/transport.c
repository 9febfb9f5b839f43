/*-------------------------------------------------------------------------
 *
 * transport.c
 *	  Messages between nodes: one non-blocking libpq connection per peer,
 *	  and the SQL function that receives them.
 *
 * Sending.  The node worker keeps one connection to every other member of
 * the configuration, opened with PQconnectStartParams and driven by
 * PQconnectPoll from the worker's wait loop, so that a slow or dead peer
 * never blocks it.  Once up, the connection runs in pipeline mode with a
 * prepared statement, SELECT raftpg.deliver($1, $2): every loop iteration
 * sends each peer one call carrying all its messages of that iteration
 * (length-prefixed, binary), followed by a sync, without waiting for the
 * answer.  Answers are read and discarded as they come; an error closes the
 * connection.  A lost connection is retried with exponential back-off.
 * Messages for a peer that is not connected are dropped: Raft resends.
 *
 * Messages are one-way.  A reply travels on the replying node's own
 * connection to the sender, so each pair of nodes uses two connections and
 * every message is pushed, never pulled.
 *
 * Receiving.  raftpg.deliver(cluster_id, messages) runs in an ordinary
 * backend of the receiving server, under the peer's credentials, so
 * pg_hba.conf, SCRAM and TLS protect the cluster like any client; only
 * superusers and roles granted EXECUTE on it may call it.  It checks the
 * cluster id and hands the bytes to the worker through the inbox
 * (mailbox.c), waking it.  It never decodes: the worker does, and a message
 * that does not decode is logged and dropped there, never trusted.
 *
 * src/transport.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "libpq-fe.h"
#include "miscadmin.h"
#include "storage/latch.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "raftpg.h"
#include "mailbox.h"
#include "transport.h"

#define DELIVER_STMT "raftpg_deliver"
#define DELIVER_SQL "SELECT raftpg.deliver($1, $2)"

/* back-off between connection attempts, in milliseconds */
#define BACKOFF_MIN_MS	100
#define BACKOFF_MAX_MS	5000

/* drop queued output above this many bytes per peer (a peer not reading) */
#define MAX_QUEUED_BYTES (64 * 1024 * 1024)

static TransportPeer *peers = NULL;
static int	n_peers = 0;
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
	p->pending_syncs = 0;
	p->flush_pending = false;
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
	if (p->conn == NULL || PQstatus(p->conn) == CONNECTION_BAD)
	{
		peer_disconnect(p, NULL);
		return;
	}
	p->state = PEER_CONNECTING;
	p->poll_status = PGRES_POLLING_WRITING;
}

/* the connection is up: pipeline mode, prepare the deliver statement */
static void
peer_ready(TransportPeer *p)
{
	if (PQsetnonblocking(p->conn, 1) != 0 ||
		PQenterPipelineMode(p->conn) != 1 ||
		PQsendPrepare(p->conn, DELIVER_STMT, DELIVER_SQL, 2, NULL) != 1 ||
		PQpipelineSync(p->conn) != 1)
	{
		peer_disconnect(p, PQerrorMessage(p->conn));
		return;
	}
	p->pending_syncs = 1;
	p->flush_pending = true;
	p->state = PEER_READY;
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
}

/* send what is queued for every peer, one deliver() call each */
void
TransportFlush(uint64 cluster_id)
{
	int			i;

	for (i = 0; i < n_peers; i++)
	{
		TransportPeer *p = &peers[i];
		char		cid[32];
		const char *values[2];
		int			lengths[2];
		int			formats[2] = {0, 1};

		if (p->state != PEER_READY)
			continue;
		if (p->out.len > 0)
		{
			snprintf(cid, sizeof(cid), UINT64_FORMAT, cluster_id);
			values[0] = cid;
			lengths[0] = 0;
			values[1] = p->out.data;
			lengths[1] = p->out.len;
			if (PQsendQueryPrepared(p->conn, DELIVER_STMT, 2, values, lengths,
									formats, 0) != 1 ||
				PQpipelineSync(p->conn) != 1)
			{
				peer_disconnect(p, PQerrorMessage(p->conn));
				continue;
			}
			p->pending_syncs++;
			p->bytes_out += p->out.len;
			p->calls_out++;
			resetStringInfo(&p->out);
			p->flush_pending = true;
		}
		peer_flush(p);
	}
}

/* read and discard answers; a failed deliver closes the connection */
static void
peer_consume(TransportPeer *p)
{
	if (PQconsumeInput(p->conn) != 1)
	{
		peer_disconnect(p, PQerrorMessage(p->conn));
		return;
	}
	while (p->pending_syncs > 0 && !PQisBusy(p->conn))
	{
		PGresult   *res = PQgetResult(p->conn);

		if (res == NULL)
			continue;
		switch (PQresultStatus(res))
		{
			case PGRES_PIPELINE_SYNC:
				p->pending_syncs--;
				break;
			case PGRES_TUPLES_OK:
			case PGRES_COMMAND_OK:
				break;
			default:
				{
					char	   *msg = pstrdup(PQresultErrorMessage(res));

					PQclear(res);
					peer_disconnect(p, msg);
					pfree(msg);
					return;
				}
		}
		PQclear(res);
	}
}

/*
 * Add the sockets to wait for to set; returns the earliest time a
 * reconnection is due (0 if none).
 */
TimestampTz
TransportAddEvents(WaitEventSet *set)
{
	int			i;
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz next = 0;

	for (i = 0; i < n_peers; i++)
	{
		TransportPeer *p = &peers[i];
		uint32		ev = 0;

		if (p->state == PEER_DISCONNECTED && p->next_attempt > now)
		{
			if (next == 0 || p->next_attempt < next)
				next = p->next_attempt;
			continue;
		}
		if (p->conn == NULL || PQsocket(p->conn) < 0)
			continue;
		if (p->state == PEER_CONNECTING)
			ev = p->poll_status == PGRES_POLLING_READING ?
				WL_SOCKET_READABLE : WL_SOCKET_WRITEABLE;
		else
			ev = WL_SOCKET_READABLE | (p->flush_pending ? WL_SOCKET_WRITEABLE : 0);
		(void) AddWaitEventToSet(set, ev, PQsocket(p->conn), NULL, p);
	}
	return next;
}

/* advance every connection: connect, poll, read answers, flush */
void
TransportPoll(void)
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
					peer_ready(p);
				break;
			case PEER_READY:
				peer_consume(p);
				if (p->state == PEER_READY)
					peer_flush(p);
				break;
		}
	}
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
 * Receiving: raftpg.deliver(cluster_id bigint, messages bytea)
 * ----------
 */
PG_FUNCTION_INFO_V1(raftpg_deliver);

Datum
raftpg_deliver(PG_FUNCTION_ARGS)
{
	int64		cluster_id = PG_GETARG_INT64(0);
	bytea	   *msgs = PG_GETARG_BYTEA_PP(1);
	int64		own;
	Latch	   *latch;

	RaftpgCheckPreloaded();
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

	if (!MailboxPut(RaftpgInbox, NULL, 0, VARDATA_ANY(msgs), VARSIZE_ANY_EXHDR(msgs)))
		PG_RETURN_BOOL(false);	/* full: dropped and counted */
	if (latch)
		SetLatch(latch);
	PG_RETURN_BOOL(true);
}
