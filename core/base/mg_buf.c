/* mg_buf.c -- see mg_buf.h. */
#include <stdlib.h>
#include "mg_buf.h"

static mg_buf_t *mg_buf_free_list;
static size_t    mg_buf_free_n;

#define MG_BUF_FREE_MAX 256

mg_buf_t *
mg_buf_get(size_t size)
{
    mg_buf_t *b;

    if (size <= MG_BUF_SIZE) {
        size = MG_BUF_SIZE;
#ifndef MG_DEBUG_PALLOC
        if ((b = mg_buf_free_list) != NULL) {
            mg_buf_free_list = b->next;
            mg_buf_free_n--;
            b->pos = b->last = b->start;
            b->next = NULL;
            return b;
        }
#endif
    }
    b = malloc(sizeof(mg_buf_t) + size);
    if (b == NULL) {
        return NULL;
    }
    b->start = (char *) (b + 1);
    b->end = b->start + size;
    b->pos = b->last = b->start;
    b->next = NULL;
    return b;
}

void
mg_buf_put(mg_buf_t *b)
{
    if (b == NULL) {
        return;
    }
#ifndef MG_DEBUG_PALLOC
    if (mg_buf_cap(b) == MG_BUF_SIZE && mg_buf_free_n < MG_BUF_FREE_MAX) {
        b->next = mg_buf_free_list;
        mg_buf_free_list = b;
        mg_buf_free_n++;
        return;
    }
#endif
    free(b);
}

mg_buf_t *
mg_buf_grow(mg_buf_t *b, size_t size)
{
    mg_buf_t *nb;
    size_t    n = mg_buf_len(b);

    if (size < n) {
        size = n;
    }
    nb = mg_buf_get(size);
    if (nb == NULL) {
        return NULL;
    }
    memcpy(nb->start, b->pos, n);
    nb->last = nb->start + n;
    mg_buf_put(b);
    return nb;
}

size_t
mg_buf_free_count(void)
{
    return mg_buf_free_n;
}

void
mg_buf_trim(size_t keep)
{
    mg_buf_t *b;

    while (mg_buf_free_n > keep && (b = mg_buf_free_list) != NULL) {
        mg_buf_free_list = b->next;
        mg_buf_free_n--;
        free(b);
    }
}
