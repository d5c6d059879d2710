/* The SQL migrations compiled into the library (generated migrations.c). */
#ifndef CAIRN_SCHEMA_H
#define CAIRN_SCHEMA_H

typedef struct cairn__migration {
    int version;
    const char *name;
    const char *sql;
    /* Libraries that know a schema older than this cannot run once it is
     * applied (0: every library can; migrations that only add). */
    int oldest_library;
} cairn__migration;

extern const cairn__migration cairn__migrations[];
extern const int cairn__migration_count;

#endif
