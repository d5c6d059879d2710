/*
 * Aligned plain-text tables for people reading a terminal. Widths count
 * UTF-8 code points, which is right for the names, IDs, timestamps and JSON
 * the tool prints (wide and combining characters are rare there).
 */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

struct cli_table {
    size_t ncols;
    size_t *limits; /* per-column cap in code points; 0: none */
    char **cells;   /* rows * ncols cells, row-major; NULL prints "-" */
    size_t rows;
    size_t cap;     /* rows allocated */
};

/* Count the code points of a UTF-8 string (every byte that does not continue a sequence). */
static size_t text_width(const char *s)
{
    size_t n = 0;

    for (; *s != '\0'; s++)
        if (((unsigned char)*s & 0xC0u) != 0x80u)
            n++;
    return n;
}

/* Write at most n code points of s, with control characters as '?'. */
static void put_points(FILE *f, const char *s, size_t n)
{
    size_t seen = 0;

    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;

        if ((c & 0xC0u) != 0x80u) {
            if (seen == n)
                return;
            seen++;
        }
        fputc((c < 0x20u || c == 0x7Fu) ? '?' : c, f);
    }
}

void cli_put_text(FILE *f, const char *text, size_t max)
{
    size_t width = text_width(text);

    if (max == 0 || width <= max) {
        put_points(f, text, width);
    } else if (max <= 3) {
        fwrite("...", 1, max, f);
    } else {
        put_points(f, text, max - 3);
        fputs("...", f);
    }
}

cli_table *cli_table_new(size_t ncols, const size_t *limits)
{
    cli_table *t = calloc(1, sizeof(*t));

    if (t == NULL)
        return NULL;
    t->ncols = ncols;
    t->limits = calloc(ncols, sizeof(*t->limits));
    if (t->limits == NULL) {
        free(t);
        return NULL;
    }
    if (limits != NULL)
        memcpy(t->limits, limits, ncols * sizeof(*t->limits));
    return t;
}

int cli_table_add(cli_table *t, const char *const *cells)
{
    if (t->rows == t->cap) {
        size_t cap = t->cap == 0 ? 16 : t->cap * 2;
        char **grown = realloc(t->cells, cap * t->ncols * sizeof(*grown));

        if (grown == NULL)
            return -1;
        t->cells = grown;
        t->cap = cap;
    }

    char **row = t->cells + t->rows * t->ncols;
    for (size_t c = 0; c < t->ncols; c++) {
        row[c] = NULL;
        if (cells[c] != NULL && (row[c] = strdup(cells[c])) == NULL) {
            for (size_t k = 0; k < c; k++)
                free(row[k]);
            return -1;
        }
    }
    t->rows++;
    return 0;
}

void cli_table_print(const cli_table *t, FILE *f)
{
    size_t *width = calloc(t->ncols, sizeof(*width));

    if (width == NULL)
        return;
    for (size_t r = 0; r < t->rows; r++) {
        for (size_t c = 0; c < t->ncols; c++) {
            const char *cell = t->cells[r * t->ncols + c];
            size_t w = cell != NULL ? text_width(cell) : 1;

            if (t->limits[c] != 0 && w > t->limits[c])
                w = t->limits[c];
            if (w > width[c])
                width[c] = w;
        }
    }

    for (size_t r = 0; r < t->rows; r++) {
        for (size_t c = 0; c < t->ncols; c++) {
            const char *cell = t->cells[r * t->ncols + c];
            size_t w;

            if (cell == NULL)
                cell = "-";
            cli_put_text(f, cell, t->limits[c]);
            if (c + 1 == t->ncols)
                break;
            w = text_width(cell);
            if (t->limits[c] != 0 && w > t->limits[c])
                w = t->limits[c];
            for (; w < width[c] + 2; w++)
                fputc(' ', f);
        }
        fputc('\n', f);
    }
    free(width);
}

void cli_table_free(cli_table *t)
{
    if (t == NULL)
        return;
    for (size_t i = 0; i < t->rows * t->ncols; i++)
        free(t->cells[i]);
    free(t->cells);
    free(t->limits);
    free(t);
}
