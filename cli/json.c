/*
 * Reading the JSON text the library returns and turning its values into
 * text for people; --json output passes the library's text through as it is.
 */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

void cli_put_json(const char *text)
{
    fputs(text, stdout);
    if (*text == '\0' || text[strlen(text) - 1] != '\n')
        fputc('\n', stdout);
}

json_t *cli_parse_json(const char *text)
{
    json_error_t err;
    json_t *root = json_loads(text, JSON_DECODE_ANY, &err);

    if (root == NULL)
        fprintf(stderr, "cairn: cannot read the library's JSON: %s (at byte %d)\n", err.text, err.position);
    return root;
}

char *cli_json_text(const json_t *v, int *failed)
{
    char *s;

    if (v == NULL || json_is_null(v))
        return NULL;
    if (json_is_string(v))
        s = strdup(json_string_value(v));
    else
        s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    if (s == NULL)
        *failed = 1;
    return s;
}
