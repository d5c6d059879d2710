/* Placeholder: filled in by the change that implements it. */
#include <stddef.h>
typedef int cairn_placeholder_stream;
