/*
 * Patch markers: changing workflow code under workflows that are already
 * running. A marker is a checkpoint named "cairn.patch:<patch>" that new
 * code writes where it changed; replay tells old executions (recorded
 * without the marker at that position) from new ones (recorded with it, or
 * reaching that position for the first time) without consuming a position
 * for the old ones, so their recorded steps still line up.
 */
#include <stdio.h>
#include <string.h>

#include "internal.h"

#define PATCH_PREFIX "cairn.patch:"

static int marker_step(cairn_step_ctx *s, const char *in, char **out, void *udata)
{
    (void)s, (void)in, (void)udata;
    *out = cairn__strdup("true");
    return *out ? CAIRN_OK : CAIRN_ENOMEM;
}

/* Builds the marker's step name; CAIRN_EINVAL for a bad patch name. */
static int marker_name(const char *patch, char *out, size_t len)
{
    char err[256];
    if (cairn__check_name("patch name", patch, err, sizeof err) != CAIRN_OK)
        return cairn__fail(CAIRN_EINVAL, "%s", err);
    if (strlen(patch) + sizeof PATCH_PREFIX - 1 > CAIRN__NAME_MAX)
        return cairn__fail(CAIRN_EINVAL, "patch name is %zu bytes long; the limit is %zu", strlen(patch),
                           (size_t)CAIRN__NAME_MAX - (sizeof PATCH_PREFIX - 1));
    snprintf(out, len, PATCH_PREFIX "%s", patch);
    return CAIRN_OK;
}

/*
 * Checks the patch name and the workflow, then looks at the workflow's
 * next position: 1 if this patch's marker is recorded there, 0 if another
 * step is, NOTHING_HERE if nothing is; a negative CAIRN_E* code on error.
 */
#define NOTHING_HERE 2
static int marker_at(cairn_ctx *ctx, const char *patch, char marker[CAIRN__NAME_MAX + 1])
{
    int rc = marker_name(patch, marker, CAIRN__NAME_MAX + 1);
    if (rc == CAIRN_OK)
        rc = cairn__ctx_usable(ctx);
    if (rc != CAIRN_OK)
        return rc;
    int n = ctx->next;
    if (n > ctx->nrec || !ctx->rec[n].name)
        return NOTHING_HERE;
    return strcmp(ctx->rec[n].name, marker) == 0;
}

int cairn_patched(cairn_ctx *ctx, const char *patch)
{
    char marker[CAIRN__NAME_MAX + 1];
    int at = marker_at(ctx, patch, marker);
    if (at == 1)
        ctx->next++;
    if (at != NOTHING_HERE)
        return at; /* 1: recorded with the patch; 0: recorded before it (the old path, no position taken) */
    /* Nothing recorded here: this execution runs the new code from now on, and says so durably. */
    cairn__entry e = {.name = marker, .step = marker_step};
    int rc = cairn__step_run(ctx, marker, &e, "null", NULL);
    return rc == CAIRN_OK ? 1 : rc;
}

int cairn_deprecate_patch(cairn_ctx *ctx, const char *patch)
{
    char marker[CAIRN__NAME_MAX + 1];
    int at = marker_at(ctx, patch, marker);
    if (at == 1)
        ctx->next++; /* a workflow started while the patch was new: step over its marker */
    return at < 0 ? at : CAIRN_OK;
}
