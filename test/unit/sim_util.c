/*
 * sim_util.c
 *	  raftsim's generator, hashing, maps and failure reporting.
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "sim.h"

/* splitmix64: the only source of randomness of a run */
uint64_t
rng_next(sim_rng *g)
{
	uint64_t	z;

	g->s += 0x9e3779b97f4a7c15ULL;
	z = g->s;
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

uint64_t
rng_below(sim_rng *g, uint64_t n)
{
	return n ? rng_next(g) % n : 0;
}

int64_t
rng_range(sim_rng *g, int64_t lo, int64_t hi)
{
	if (hi <= lo)
		return lo;
	return lo + (int64_t) rng_below(g, (uint64_t) (hi - lo + 1));
}

bool
rng_chance(sim_rng *g, double p)
{
	if (p <= 0)
		return false;
	return (double) (rng_next(g) >> 11) * (1.0 / 9007199254740992.0) < p;
}

uint64_t
hash_mix(uint64_t a, uint64_t b)
{
	uint64_t	z = a ^ (b + 0x9e3779b97f4a7c15ULL + (a << 6) + (a >> 2));

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

uint64_t
hash_bytes(const void *p, size_t n)
{
	const uint8_t *b = p;
	uint64_t	h = 0xcbf29ce484222325ULL;
	size_t		i;

	for (i = 0; i < n; i++)
	{
		h ^= b[i];
		h *= 0x100000001b3ULL;
	}
	return hash_mix(h, n);
}

uint64_t
entry_hash(uint8_t type, const uint8_t *data, uint32_t len)
{
	return hash_mix(hash_bytes(data, len), type);
}

void *
xmalloc(size_t n)
{
	void	   *p = malloc(n ? n : 1);

	if (p == NULL)
	{
		fprintf(stderr, "raftsim: out of memory\n");
		abort();
	}
	return p;
}

void *
xcalloc(size_t n, size_t size)
{
	void	   *p = calloc(n ? n : 1, size ? size : 1);

	if (p == NULL)
	{
		fprintf(stderr, "raftsim: out of memory\n");
		abort();
	}
	return p;
}

void *
xrealloc(void *p, size_t n)
{
	void	   *q = realloc(p, n ? n : 1);

	if (q == NULL)
	{
		fprintf(stderr, "raftsim: out of memory\n");
		abort();
	}
	return q;
}

/* ----------
 * logmap: open addressing on (index, term)
 * ----------
 */
static size_t
logmap_pos(const logmap *m, raft_index index, raft_term term)
{
	return (size_t) hash_mix(index, term) & (m->cap - 1);
}

static void
logmap_grow(logmap *m)
{
	logmap_slot *old = m->slots;
	size_t		oldcap = m->cap;
	size_t		i;

	m->cap = oldcap ? oldcap * 2 : 1024;
	m->slots = xcalloc(m->cap, sizeof(logmap_slot));
	for (i = 0; i < oldcap; i++)
	{
		size_t		pos;

		if (old[i].index == 0)
			continue;
		pos = logmap_pos(m, old[i].index, old[i].term);
		while (m->slots[pos].index != 0)
			pos = (pos + 1) & (m->cap - 1);
		m->slots[pos] = old[i];
	}
	free(old);
}

logmap_slot *
logmap_get(logmap *m, raft_index index, raft_term term)
{
	size_t		pos;

	if (m->cap == 0 || (m->n + 1) * 2 > m->cap)
		logmap_grow(m);
	pos = logmap_pos(m, index, term);
	for (;;)
	{
		logmap_slot *sl = &m->slots[pos];

		if (sl->index == 0)
		{
			/* the caller fills it; count it now */
			m->n++;
			sl->term = term;
			return sl;
		}
		if (sl->index == index && sl->term == term)
			return sl;
		pos = (pos + 1) & (m->cap - 1);
	}
}

void
logmap_free(logmap *m)
{
	free(m->slots);
	memset(m, 0, sizeof(*m));
}

/* ----------
 * Reporting
 * ----------
 */
bool
sim_logging(const sim *s)
{
	return s->verbose || s->trace;
}

void
sim_log(sim *s, const char *fmt,...)
{
	char		line[1024];
	va_list		ap;
	int			k;

	if (!sim_logging(s))
		return;
	k = snprintf(line, sizeof(line), "[%6llu t=%5lld.%03lld] ",
				 (unsigned long long) s->step,
				 (long long) (s->now / SIM_TICK),
				 (long long) (s->now % SIM_TICK));
	va_start(ap, fmt);
	vsnprintf(line + k, sizeof(line) - (size_t) k, fmt, ap);
	va_end(ap);
	if (s->trace)
	{
		fputs(line, stdout);
		fputc('\n', stdout);
		return;
	}
	/* verbose: keep the last lines for the failure report */
	if (s->ring == NULL)
		s->ring = xcalloc(SIM_RING, sizeof(char *));
	free(s->ring[s->ring_pos % SIM_RING]);
	s->ring[s->ring_pos % SIM_RING] = strdup(line);
	s->ring_pos++;
}

void
sim_dump_ring(sim *s)
{
	size_t		i,
				start;

	if (s->ring == NULL)
		return;
	start = s->ring_pos > SIM_RING ? s->ring_pos - SIM_RING : 0;
	printf("--- the last %zu events before the failure (--trace prints all) ---\n",
		   s->ring_pos - start);
	for (i = start; i < s->ring_pos; i++)
		printf("%s\n", s->ring[i % SIM_RING]);
	printf("---\n");
}

void
sim_fail(sim *s, const char *fmt,...)
{
	va_list		ap;
	int			k;

	k = snprintf(s->fail_msg, sizeof(s->fail_msg), "step %llu (t=%lld.%03lld%s): ",
				 (unsigned long long) s->step,
				 (long long) (s->now / SIM_TICK),
				 (long long) (s->now % SIM_TICK),
				 s->healing ? ", heal phase" : "");
	va_start(ap, fmt);
	vsnprintf(s->fail_msg + k, sizeof(s->fail_msg) - (size_t) k, fmt, ap);
	va_end(ap);
	longjmp(s->fail_jmp, 1);
}
