/*
 * mg_health_arena.c -- the one region that holds every target's health
 * state for the master's whole life, shared by every process it forks.
 * See mg_health.h for the model.
 *
 * The master maps it (MAP_SHARED | MAP_ANONYMOUS) once, before its first
 * fork, and never unmaps it: workers of every generation, a worker that
 * rebuilt its runtime in-process and the admin process all see the same
 * pages.  A runtime finds its targets' words by key: open addressing
 * with linear probing over a power-of-two table, each slot claimed by a
 * compare-and-swap of its key from 0.  Processes building the same
 * config at the same moment walk the same probe sequence, so they agree
 * on the slot with no lock; a slot is never given back.
 *
 * Rejected: a lock-protected hash table in shared memory (a process
 * dying inside the lock wedges the others, as mg_health.h says of the
 * state words); a named file mapping (/dev/shm) -- the state is worth
 * nothing after the master exits, and an anonymous mapping needs no name
 * and no clean-up; freeing slots of removed targets -- no process knows
 * whether another one (an old worker draining, the admin process) still
 * points at a slot, so reuse would need an epoch scheme across processes;
 * at 64 bytes a slot, 65536 of them cost 4 MiB of address space and pages
 * only where used, which makes leaking them the simpler trade.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include "mg_health_int.h"

_Static_assert(sizeof(mg_health_slot_t) == 64, "a slot is one cache line");
_Static_assert(offsetof(struct mg_health_arena_s, gen) == 64,
               "the generation has a cache line of its own");
_Static_assert(offsetof(struct mg_health_arena_s, slots) == 128,
               "slots start on a cache line");

#define MG_HEALTH_ARENA_MIN (1u << 6)
#define MG_HEALTH_ARENA_MAX (1u << 24)   /* 1 GiB of address space */

static mg_health_arena_t *mg_health_arena_current;

mg_health_arena_t *
mg_health_arena_create(size_t slots, char *err, size_t errlen)
{
    mg_health_arena_t *a;
    size_t             n = MG_HEALTH_ARENA_MIN, size;
    void              *m;

    if (slots == 0) {
        slots = MG_HEALTH_ARENA_SLOTS;
    }
    if (slots > MG_HEALTH_ARENA_MAX) {
        snprintf(err, errlen, "health arena: at most %u slots",
                 MG_HEALTH_ARENA_MAX);
        return NULL;
    }
    while (n < slots) {
        n <<= 1;
    }
    size = sizeof(mg_health_arena_t) + n * sizeof(mg_health_slot_t);
    m = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
             -1, 0);
    if (m == MAP_FAILED) {
        snprintf(err, errlen, "health arena: mmap(%zu) failed: %s", size,
                 strerror(errno));
        return NULL;
    }
    a = m;                  /* zero-filled: every slot free */
    a->magic = MG_HEALTH_ARENA_MAGIC;
    a->nslots = n;
    a->size = size;
    return a;
}

void
mg_health_arena_free(mg_health_arena_t *a)
{
    if (a == NULL) {
        return;
    }
    if (a == mg_health_arena_current) {
        mg_health_arena_current = NULL;
    }
    munmap(a, a->size);
}

void
mg_health_arena_set(mg_health_arena_t *a)
{
    mg_health_arena_current = a;
}

mg_health_arena_t *
mg_health_arena_get(void)
{
    return mg_health_arena_current;
}

size_t
mg_health_arena_slots(const mg_health_arena_t *a)
{
    return a ? a->nslots : 0;
}

size_t
mg_health_arena_used(const mg_health_arena_t *a)
{
    return a ? (size_t) atomic_load(&((mg_health_arena_t *) a)->used) : 0;
}

static mg_health_slot_t *
mg_health_arena_lookup(mg_health_arena_t *a, uint64_t key, int claim)
{
    size_t   mask = a->nslots - 1, i = (size_t) key & mask, n;
    size_t   limit = mg_min(a->nslots, (size_t) MG_HEALTH_ARENA_PROBES);
    uint64_t cur;

    for (n = 0; n < limit; n++, i = (i + 1) & mask) {
        mg_health_slot_t *s = &a->slots[i];

        cur = atomic_load(&s->key);
        if (cur == 0) {
            if (!claim) {
                return NULL;    /* keys are never removed: not here */
            }
            /* on failure cur becomes the key that won the slot: ours
             * (another process building the same target) or another one
             * (keep probing) */
            if (atomic_compare_exchange_strong(&s->key, &cur, key)) {
                atomic_fetch_add(&a->used, 1);
                return s;
            }
        }
        if (cur == key) {
            return s;
        }
    }
    return NULL;
}

mg_health_slot_t *
mg_health_arena_claim(mg_health_arena_t *a, uint64_t key)
{
    return mg_health_arena_lookup(a, key, 1);
}

mg_health_slot_t *
mg_health_arena_find(mg_health_arena_t *a, uint64_t key)
{
    return mg_health_arena_lookup(a, key, 0);
}

/* --- keys ------------------------------------------------------------ */

uint64_t
mg_health_hash_begin(void)
{
    return 0xcbf29ce484222325ULL;       /* FNV-1a offset basis */
}

uint64_t
mg_health_hash_add(uint64_t hv, const void *p, size_t n)
{
    const unsigned char *s = p;
    uint64_t             len = n;
    size_t               i;

    /* the length first: ("ab", "c") and ("a", "bc") differ */
    for (i = 0; i < sizeof(len); i++) {
        hv ^= (len >> (i * 8)) & 0xff;
        hv *= 0x100000001b3ULL;
    }
    for (i = 0; i < n; i++) {
        hv ^= s[i];
        hv *= 0x100000001b3ULL;
    }
    return hv;
}

uint64_t
mg_health_hash_end(uint64_t hv)
{
    /* MurmurHash3's fmix64: every input bit reaches the low bits that
     * pick the home slot */
    hv ^= hv >> 33;
    hv *= 0xff51afd7ed558ccdULL;
    hv ^= hv >> 33;
    hv *= 0xc4ceb9fe1a85ec53ULL;
    hv ^= hv >> 33;
    return hv ? hv : 1;                 /* 0 marks a free slot */
}
