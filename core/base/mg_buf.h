/*
 * mg_buf.h -- I/O buffers and the worker's buffer free list.
 *
 * A buffer is one malloc'd block: the header followed by the data.
 * [start, end) is the memory, [pos, last) the unread bytes.  Connections
 * take a buffer when bytes arrive and give it back when they go idle, so
 * an idle keep-alive connection holds no buffer at all (the memory target
 * is 4 KiB per idle connection).  Standard-size buffers are recycled
 * through a per-process free list; larger ones (a big header block) are
 * freed at once.  Rejected: per-connection fixed arrays -- they would make
 * every idle connection pay for its largest moment.
 */
#ifndef MG_BUF_H
#define MG_BUF_H

#include "../mg_core.h"

#define MG_BUF_SIZE (16 * 1024)

struct mg_buf_s {
    char     *start;
    char     *end;
    char     *pos;
    char     *last;
    mg_buf_t *next;       /* free list link */
};

/* A buffer of at least size bytes (MG_BUF_SIZE ones come from the free
 * list); NULL on ENOMEM. */
mg_buf_t *mg_buf_get(size_t size);
void mg_buf_put(mg_buf_t *b);

/* Grow b to hold at least size bytes, keeping [pos, last); returns the
 * new buffer (b is released) or NULL, in which case b is untouched. */
mg_buf_t *mg_buf_grow(mg_buf_t *b, size_t size);

/* Move unread bytes to the start to make room at the end. */
static inline void
mg_buf_compact(mg_buf_t *b)
{
    size_t n = (size_t) (b->last - b->pos);
    if (b->pos != b->start) {
        if (n) memmove(b->start, b->pos, n);
        b->pos = b->start;
        b->last = b->start + n;
    }
}

static inline size_t mg_buf_len(const mg_buf_t *b) { return (size_t) (b->last - b->pos); }
static inline size_t mg_buf_room(const mg_buf_t *b) { return (size_t) (b->end - b->last); }
static inline size_t mg_buf_cap(const mg_buf_t *b) { return (size_t) (b->end - b->start); }

/* Free-list statistics for tests and memory accounting. */
size_t mg_buf_free_count(void);
void mg_buf_trim(size_t keep);

#endif
