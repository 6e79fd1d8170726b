#include "ini_file.h"

#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct ini_reader_state {
    FILE *file;
    nnopt_ini *ini;
    nnopt_error *err;
    int line;
    char *raw; /* current line as read, for error messages */
    size_t raw_cap;
} ini_reader_state;

void nnopt_ini_where(const nnopt_ini *ini, int line, char *buf, size_t size) {
    if (line > 0)
        snprintf(buf, size, "%s:%d", ini->path, line);
    else
        snprintf(buf, size, "--set");
}

static nnopt_status push_section(nnopt_ini *ini, const char *name, int line) {
    nnopt_ini_section *s = realloc(ini->sections, (size_t)(ini->n_sections + 1) * sizeof *s);
    if (!s) return NNOPT_STATUS_OUT_OF_MEMORY;
    ini->sections = s;
    s[ini->n_sections].name = strdup(name);
    s[ini->n_sections].line = line;
    ini->n_sections++;
    return NNOPT_OK;
}

static char *trim(char *s) {
    while (isspace((unsigned char)*s)) s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1])) *--e = '\0';
    return s;
}

/* Feeds inih one line at a time so that we know the line number of every
 * entry, can reject lines inih would cut, and can drop indentation. */
static char *read_line(char *str, int num, void *stream) {
    ini_reader_state *st = stream;
    ssize_t len = getline(&st->raw, &st->raw_cap, st->file);
    if (len < 0) return NULL;
    st->line++;
    char where[1200];
    nnopt_ini_where(st->ini, st->line, where, sizeof where);
    char *text = st->raw;
    while (*text == ' ' || *text == '\t') text++;
    size_t text_len = strlen(text);
    while (text_len && (text[text_len - 1] == '\n' || text[text_len - 1] == '\r')) text_len--;
    if (text_len + 2 > (size_t)num || text_len > NNOPT_INI_MAX_LINE) {
        nnopt_error_set(st->err, NNOPT_STATUS_CONFIG,
                        "%s: line is too long (%zu characters, at most %d)", where, text_len,
                        num - 2 < NNOPT_INI_MAX_LINE ? num - 2 : NNOPT_INI_MAX_LINE);
        text_len = 0; /* hand inih a blank line; the error is already recorded */
    }
    if (text_len && text[0] == '[') {
        char name[NNOPT_INI_MAX_LINE + 1];
        const char *close = memchr(text, ']', text_len);
        if (!close) {
            nnopt_error_set(st->err, NNOPT_STATUS_CONFIG, "%s: section header without ']'", where);
        } else {
            size_t n = (size_t)(close - text - 1);
            memcpy(name, text + 1, n);
            name[n] = '\0';
            char *clean = trim(name);
            if (strlen(clean) > NNOPT_INI_MAX_SECTION)
                nnopt_error_set(st->err, NNOPT_STATUS_CONFIG,
                                "%s: section name is too long (%zu characters, at most %d)", where,
                                strlen(clean), NNOPT_INI_MAX_SECTION);
            else if (!clean[0])
                nnopt_error_set(st->err, NNOPT_STATUS_CONFIG, "%s: empty section name", where);
            else
                push_section(st->ini, clean, st->line);
        }
    }
    memcpy(str, text, text_len);
    str[text_len] = '\n';
    str[text_len + 1] = '\0';
    return str;
}

static int on_entry(void *user, const char *section, const char *name, const char *value) {
    ini_reader_state *st = user;
    nnopt_ini *ini = st->ini;
    char where[1200];
    nnopt_ini_where(ini, st->line, where, sizeof where);
    if (!section[0]) {
        nnopt_error_set(st->err, NNOPT_STATUS_CONFIG, "%s: '%s' appears before any [section]",
                        where, name);
        return 1;
    }
    for (int i = 0; i < ini->n_entries; i++) {
        nnopt_ini_entry *e = &ini->entries[i];
        if (strcmp(e->section, section) == 0 && strcmp(e->key, name) == 0) {
            nnopt_error_set(st->err, NNOPT_STATUS_CONFIG,
                            "%s: duplicate key '%s' in [%s] (first set on line %d)", where, name,
                            section, e->line);
            return 1;
        }
    }
    nnopt_ini_entry *entries =
        realloc(ini->entries, (size_t)(ini->n_entries + 1) * sizeof *entries);
    if (!entries) return 0;
    ini->entries = entries;
    nnopt_ini_entry *e = &entries[ini->n_entries++];
    e->section = strdup(section);
    e->key = strdup(name);
    e->value = strdup(value);
    e->line = st->line;
    return 1;
}

nnopt_status nnopt_ini_read(const char *path, nnopt_ini *out, nnopt_error *err) {
    memset(out, 0, sizeof *out);
    out->path = strdup(path);
    ini_reader_state st = {.ini = out, .err = err};
    st.file = fopen(path, "r");
    if (!st.file) {
        nnopt_error_set(err, NNOPT_STATUS_IO, "%s: cannot open: %s", path, strerror(errno));
        return NNOPT_STATUS_IO;
    }
    nnopt_error local = {0};
    if (!err) err = st.err = &local;
    int bad_line = ini_parse_stream(read_line, &st, on_entry, &st);
    fclose(st.file);
    free(st.raw);
    if (err->status != NNOPT_OK) return err->status;
    if (bad_line > 0) {
        /* Re-read that line to quote it. */
        char where[1200], text[128] = "";
        nnopt_ini_where(out, bad_line, where, sizeof where);
        FILE *f = fopen(path, "r");
        char *buf = NULL;
        size_t cap = 0;
        for (int i = 1; f && getline(&buf, &cap, f) >= 0; i++)
            if (i == bad_line) {
                snprintf(text, sizeof text, "%s", trim(buf));
                break;
            }
        free(buf);
        if (f) fclose(f);
        return nnopt_error_set(err, NNOPT_STATUS_CONFIG,
                               "%s: malformed line '%s' (expected [section] or key = value)", where,
                               text);
    }
    if (bad_line < 0) return nnopt_error_set(err, NNOPT_STATUS_IO, "%s: cannot read", path);
    return NNOPT_OK;
}

nnopt_status nnopt_ini_override(nnopt_ini *ini, const char *assignment, nnopt_error *err) {
    const char *eq = strchr(assignment, '=');
    const char *dot = NULL;
    for (const char *p = assignment; eq && p < eq; p++)
        if (*p == '.') dot = p;
    if (!eq || !dot || dot == assignment || dot + 1 == eq)
        return nnopt_error_set(err, NNOPT_STATUS_CONFIG, "--set '%s': expected section.key=value",
                               assignment);
    char *section = strndup(assignment, (size_t)(dot - assignment));
    char *key = strndup(dot + 1, (size_t)(eq - dot - 1));
    char *value = strdup(eq + 1);
    char *s = trim(section), *k = trim(key), *v = trim(value);
    nnopt_ini_entry *found = NULL;
    for (int i = 0; i < ini->n_entries; i++)
        if (strcmp(ini->entries[i].section, s) == 0 && strcmp(ini->entries[i].key, k) == 0)
            found = &ini->entries[i];
    if (found) {
        free(found->value);
        found->value = strdup(v);
        found->line = 0;
    } else {
        nnopt_ini_entry *entries =
            realloc(ini->entries, (size_t)(ini->n_entries + 1) * sizeof *entries);
        if (entries) {
            ini->entries = entries;
            nnopt_ini_entry *e = &entries[ini->n_entries++];
            e->section = strdup(s);
            e->key = strdup(k);
            e->value = strdup(v);
            e->line = 0;
        }
        int has_section = 0;
        for (int i = 0; i < ini->n_sections; i++)
            has_section |= strcmp(ini->sections[i].name, s) == 0;
        if (!has_section) push_section(ini, s, 0);
    }
    free(section);
    free(key);
    free(value);
    return NNOPT_OK;
}

void nnopt_ini_free(nnopt_ini *ini) {
    for (int i = 0; i < ini->n_entries; i++) {
        free(ini->entries[i].section);
        free(ini->entries[i].key);
        free(ini->entries[i].value);
    }
    for (int i = 0; i < ini->n_sections; i++) free(ini->sections[i].name);
    free(ini->entries);
    free(ini->sections);
    free(ini->path);
    memset(ini, 0, sizeof *ini);
}
