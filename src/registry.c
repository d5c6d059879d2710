/*
 * The names a handle knows: workflow and step code registered before the
 * workers start. The table is only written before cairn_start_workers(), so
 * executor threads read it without a lock.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

int cairn__registry_add(cairn__registry *r, const cairn__entry *e)
{
    if (cairn__registry_find(r, e->name))
        return cairn__fail(CAIRN_EINVAL, "'%s' is already registered", e->name);
    if (r->count == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 16;
        cairn__entry *items = realloc(r->items, cap * sizeof *items);
        if (!items)
            return cairn__fail(CAIRN_ENOMEM, "out of memory");
        r->items = items;
        r->cap = cap;
    }
    cairn__entry *n = &r->items[r->count];
    *n = *e;
    n->name = cairn__strdup(e->name);
    if (!n->name)
        return cairn__fail(CAIRN_ENOMEM, "out of memory");
    r->count++;
    return CAIRN_OK;
}

/* A linear scan: registries hold tens of names and the scan touches one array. */
const cairn__entry *cairn__registry_find(const cairn__registry *r, const char *name)
{
    for (size_t i = 0; i < r->count; i++)
        if (r->items[i].name[0] == name[0] && strcmp(r->items[i].name, name) == 0)
            return &r->items[i];
    return NULL;
}

void cairn__registry_free(cairn__registry *r)
{
    for (size_t i = 0; i < r->count; i++) {
        free(r->items[i].name);
        free(r->items[i].sql);
    }
    free(r->items);
    r->items = NULL;
    r->count = r->cap = 0;
}
