/* Reading INI files (through inih) into a list of entries that remember
 * their line, so later validation can point at file:line. */
#ifndef NNOPT_CORE_INI_FILE_H
#define NNOPT_CORE_INI_FILE_H

#include "error.h"

typedef struct nnopt_ini_entry {
    char *section, *key, *value;
    int line; /* 0: from a command-line override */
} nnopt_ini_entry;

typedef struct nnopt_ini_section {
    char *name;
    int line;
} nnopt_ini_section;

typedef struct nnopt_ini {
    char *path;
    nnopt_ini_entry *entries;
    int n_entries;
    nnopt_ini_section *sections;
    int n_sections;
} nnopt_ini;

/* Longest line and section name accepted (inih's own limits). */
#define NNOPT_INI_MAX_LINE 1000
#define NNOPT_INI_MAX_SECTION 49

/* Parses path. Malformed lines, over-long lines or section names, duplicate
 * keys and keys before any section are errors naming file:line. Leading
 * indentation is ignored (inih would take an indented line as the
 * continuation of the previous value). */
nnopt_status nnopt_ini_read(const char *path, nnopt_ini *out, nnopt_error *err);

/* Applies "section.key=value" (the last '.' before '=' splits section from
 * key, so "model student.dense=50" works), replacing an existing entry. */
nnopt_status nnopt_ini_override(nnopt_ini *ini, const char *assignment, nnopt_error *err);

void nnopt_ini_free(nnopt_ini *ini);

/* "file:line" (or "--set") for an entry. */
void nnopt_ini_where(const nnopt_ini *ini, int line, char *buf, size_t size);

#endif
