/* The SQL migrations compiled into the library (generated migrations.c). */
#ifndef CAIRN_SCHEMA_H
#define CAIRN_SCHEMA_H

typedef struct cairn__migration {
    int version;
    const char *name;
    const char *sql;
} cairn__migration;

extern const cairn__migration cairn__migrations[];
extern const int cairn__migration_count;

#endif
