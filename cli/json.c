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

int cli_print_json_table(const char *text, const char *what, size_t ncols, const char *const *header,
                         const size_t *limits, cli_row_fn add_row)
{
    json_t *root = cli_parse_json(text);
    cli_table *t;
    int failed = 0;
    size_t i;
    json_t *row;

    if (root == NULL)
        return CLI_EXIT_FAIL;
    if (!json_is_array(root)) {
        fprintf(stderr, "cairn: the library's list of %s is not a JSON array\n", what);
        json_decref(root);
        return CLI_EXIT_FAIL;
    }
    if (json_array_size(root) == 0) {
        printf("no %s\n", what);
        json_decref(root);
        return CLI_EXIT_OK;
    }
    t = cli_table_new(ncols, limits);
    if (t == NULL || cli_table_add(t, header) < 0)
        failed = 1;
    json_array_foreach(root, i, row) {
        if (failed || add_row(t, row) < 0) {
            failed = 1;
            break;
        }
    }
    if (!failed)
        cli_table_print(t, stdout);
    else
        fprintf(stderr, "cairn: out of memory\n");
    cli_table_free(t);
    json_decref(root);
    return failed ? CLI_EXIT_FAIL : CLI_EXIT_OK;
}
