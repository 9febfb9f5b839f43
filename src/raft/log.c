/*-------------------------------------------------------------------------
 *
 * log.c
 *	  The in-memory view of the Raft log: durable layer plus overlay.
 *
 * See log.h for the model.  Entry data is owned by the layer that holds
 * the entry; moving an entry between layers moves the pointer.  Every
 * function that can fail allocates everything first and changes nothing
 * until it cannot fail any more.
 *
 *-------------------------------------------------------------------------
 */
#include "raft_int.h"
#include "log.h"

void
log_init(raft_log *l, raft_index snap_index, raft_term snap_term)
{
	memset(l, 0, sizeof(*l));
	l->snap_index = snap_index;
	l->snap_term = snap_term;
}

static void
free_entries(raft_entry *ents, size_t n)
{
	size_t		i;

	for (i = 0; i < n; i++)
	{
		raft_free(ents[i].data);
		ents[i].data = NULL;
	}
}

void
log_free(raft_log *l)
{
	free_entries(l->ents, l->n);
	free_entries(l->ov, l->ov_n);
	raft_free(l->ents);
	raft_free(l->ov);
	memset(l, 0, sizeof(*l));
}

static int
reserve(raft_entry **arr, size_t *cap, size_t need)
{
	size_t		ncap;
	raft_entry *p;

	if (need <= *cap)
		return RAFT_OK;
	ncap = *cap ? *cap : 16;
	while (ncap < need)
		ncap *= 2;
	if (ncap > SIZE_MAX / sizeof(raft_entry))
		return RAFT_ENOMEM;
	p = raft_realloc(*arr, ncap * sizeof(raft_entry));
	if (p == NULL)
		return RAFT_ENOMEM;
	*arr = p;
	*cap = ncap;
	return RAFT_OK;
}

/* copy ents' data; on failure free what was copied */
static int
copy_data(const raft_entry *src, raft_entry *dst, size_t n)
{
	size_t		i;

	for (i = 0; i < n; i++)
	{
		dst[i] = src[i];
		dst[i].data = NULL;
		if (src[i].len > 0)
		{
			dst[i].data = raft_malloc(src[i].len);
			if (dst[i].data == NULL)
			{
				free_entries(dst, i);
				return RAFT_ENOMEM;
			}
			memcpy(dst[i].data, src[i].data, src[i].len);
		}
	}
	return RAFT_OK;
}

int
log_restore(raft_log *l, const raft_entry *ents, size_t n)
{
	size_t		i;
	int			rc;

	RAFT_ASSERT(l->n == 0 && l->ov_n == 0 && l->ov_from == 0);
	for (i = 0; i < n; i++)
	{
		if (ents[i].index != l->snap_index + 1 + i)
			return RAFT_EINVAL;
		if (i > 0 && ents[i].term < ents[i - 1].term)
			return RAFT_EINVAL;
	}
	if (n > 0 && ents[0].term < l->snap_term)
		return RAFT_EINVAL;
	rc = reserve(&l->ents, &l->cap, n);
	if (rc != RAFT_OK)
		return rc;
	rc = copy_data(ents, l->ents, n);
	if (rc != RAFT_OK)
		return rc;
	l->n = n;
	return RAFT_OK;
}

raft_index
log_first_index(const raft_log *l)
{
	return l->snap_index + 1;
}

static raft_index
durable_last(const raft_log *l)
{
	return l->snap_index + l->n;
}

raft_index
log_last_index(const raft_log *l)
{
	if (l->ov_from != 0)
		return l->ov_from + l->ov_n - 1;
	return durable_last(l);
}

raft_index
log_stable_index(const raft_log *l)
{
	if (l->ov_from != 0)
		return RAFT_MIN(durable_last(l), l->ov_from - 1);
	return durable_last(l);
}

bool
log_has_overlay(const raft_log *l)
{
	return l->ov_from != 0;
}

const raft_entry *
log_get(const raft_log *l, raft_index i)
{
	if (i <= l->snap_index || i > log_last_index(l))
		return NULL;
	if (l->ov_from != 0 && i >= l->ov_from)
		return &l->ov[i - l->ov_from];
	return &l->ents[i - l->snap_index - 1];
}

int
log_term(const raft_log *l, raft_index i, raft_term *t)
{
	const raft_entry *e;

	if (i == l->snap_index)
	{
		*t = l->snap_term;
		return RAFT_OK;
	}
	if (i < l->snap_index)
		return RAFT_ECOMPACTED;
	e = log_get(l, i);
	if (e == NULL)
		return RAFT_ENOTFOUND;
	*t = e->term;
	return RAFT_OK;
}

raft_term
log_term_or_zero(const raft_log *l, raft_index i)
{
	raft_term	t;

	if (log_term(l, i, &t) != RAFT_OK)
		return 0;
	return t;
}

raft_term
log_last_term(const raft_log *l)
{
	return log_term_or_zero(l, log_last_index(l));
}

/*
 * The overlay after replacing from "from": keep = how many of the current
 * overlay's entries survive, start = the overlay's first index.
 */
static void
overlay_plan(const raft_log *l, raft_index from, raft_index *start, size_t *keep)
{
	if (l->ov_from != 0 && from >= l->ov_from)
	{
		*start = l->ov_from;
		*keep = (size_t) (from - l->ov_from);
	}
	else
	{
		*start = from;
		*keep = 0;
	}
}

/*
 * Room for an overlay of ov_n entries starting at start, and for the
 * durable array to take it over in log_stabilize(), which must not fail:
 * by then the host has persisted and the view has to follow.
 */
static int
reserve_both(raft_log *l, raft_index start, size_t ov_n)
{
	int			rc;

	rc = reserve(&l->ov, &l->ov_cap, ov_n);
	if (rc == RAFT_OK)
		rc = reserve(&l->ents, &l->cap,
					 (size_t) (start - l->snap_index - 1) + ov_n);
	return rc;
}

int
log_replace(raft_log *l, raft_index from, const raft_entry *ents, size_t n)
{
	raft_index	start;
	size_t		keep;
	size_t		k;
	raft_entry *copies;
	int			rc;

	RAFT_ASSERT(from > l->snap_index && from <= log_last_index(l) + 1);
	overlay_plan(l, from, &start, &keep);

	copies = raft_calloc(n ? n : 1, sizeof(raft_entry));
	if (copies == NULL)
		return RAFT_ENOMEM;
	rc = copy_data(ents, copies, n);
	if (rc != RAFT_OK)
	{
		raft_free(copies);
		return rc;
	}
	rc = reserve_both(l, start, keep + n);
	if (rc != RAFT_OK)
	{
		free_entries(copies, n);
		raft_free(copies);
		return rc;
	}

	/* nothing can fail from here on */
	free_entries(l->ov + keep, l->ov_n - keep);
	for (k = 0; k < n; k++)
	{
		copies[k].index = from + k;
		l->ov[keep + k] = copies[k];
	}
	raft_free(copies);
	l->ov_from = start;
	l->ov_n = keep + n;
	return RAFT_OK;
}

int
log_append_owned(raft_log *l, raft_entry *ents, size_t n)
{
	raft_index	from = log_last_index(l) + 1;
	raft_index	start;
	size_t		keep;
	size_t		k;
	int			rc;

	overlay_plan(l, from, &start, &keep);
	rc = reserve_both(l, start, keep + n);
	if (rc != RAFT_OK)
		return rc;
	for (k = 0; k < n; k++)
	{
		ents[k].index = from + k;
		l->ov[keep + k] = ents[k];
	}
	l->ov_from = start;
	l->ov_n = keep + n;
	return RAFT_OK;
}

void
log_stabilize(raft_log *l)
{
	size_t		keep;
	size_t		k;

	if (l->ov_from == 0)
		return;
	keep = (size_t) (l->ov_from - l->snap_index - 1);
	RAFT_ASSERT(keep <= l->n);

	/* reserve_both() made room when the overlay grew */
	RAFT_ASSERT(l->cap >= keep + l->ov_n);
	free_entries(l->ents + keep, l->n - keep);
	for (k = 0; k < l->ov_n; k++)
		l->ents[keep + k] = l->ov[k];
	l->n = keep + l->ov_n;
	l->ov_n = 0;
	l->ov_from = 0;
}

void
log_discard_overlay(raft_log *l)
{
	free_entries(l->ov, l->ov_n);
	l->ov_n = 0;
	l->ov_from = 0;
}

void
log_compact(raft_log *l, raft_index index, raft_term term)
{
	size_t		drop;
	size_t		need;

	if (index <= l->snap_index)
		return;
	RAFT_ASSERT(index <= durable_last(l));
	RAFT_ASSERT(l->ov_from == 0 || index < l->ov_from);
	drop = (size_t) (index - l->snap_index);
	free_entries(l->ents, drop);
	memmove(l->ents, l->ents + drop, (l->n - drop) * sizeof(raft_entry));
	l->n -= drop;
	l->snap_index = index;
	l->snap_term = term;

	/*
	 * Give back an array that is mostly empty now, keeping the room an
	 * overlay reserved for log_stabilize() (if that fails, keep it all).
	 */
	need = l->n;
	if (l->ov_from != 0)
		need = RAFT_MAX(need, (size_t) (l->ov_from - l->snap_index - 1) + l->ov_n);
	if (l->cap > 64 && need < l->cap / 4)
	{
		size_t		ncap = RAFT_MAX(need * 2, 16);
		raft_entry *p = raft_realloc(l->ents, ncap * sizeof(raft_entry));

		if (p != NULL)
		{
			l->ents = p;
			l->cap = ncap;
		}
	}
}

void
log_install_snapshot(raft_log *l, raft_index index, raft_term term)
{
	raft_term	t;

	RAFT_ASSERT(l->ov_from == 0);
	if (index > l->snap_index && index <= durable_last(l) &&
		log_term(l, index, &t) == RAFT_OK && t == term)
	{
		log_compact(l, index, term);
		return;
	}
	free_entries(l->ents, l->n);
	l->n = 0;
	l->snap_index = index;
	l->snap_term = term;
}
