/* One dataset record checker shared by the upload validator (dsval.c) and the
 * training loader (data.c), so both accept and reject exactly the same
 * records with the same codes, and clean and hash them the same way.
 *
 * A record is a JSON object (a JSONL line, or a CSV row made into one by
 * rec_csv_object). rec_check fixes the file's format from its first
 * classifiable record and checks every record against it, with the error
 * codes of OpenAI's dataset-check cookbook (see dsval.h for the list).
 * Cleaning (rec_clean) and the content key (rec_key) are documented in
 * data.h. CSV records are delimited by a '\n' outside quotes (the quote state
 * flips on every '"') and split by rec_csv_split (RFC 4180). */
#ifndef FT_RECORD_H
#define FT_RECORD_H
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "data/data.h"

#define REC_LABEL_MAX 64 /* bytes of a label, with its NUL */

typedef struct {
  const char *code; /* "invalid_json", "missing_content", ... */
  char message[320];
} rec_error;

/* "chat", "prompt_completion", "text", "classification"; NULL for 0. */
const char *rec_format_name(ft_data_format f);
/* FNV-1a with a splitmix finaliser; never 0. */
uint64_t rec_hash(const char *p, size_t n);

/* Parses one JSONL line (checked for UTF-8 first): the value, or NULL with e
 * set (invalid_utf8, invalid_json). */
json_t *rec_parse_jsonl(const char *p, size_t n, rec_error *e);
/* Checks o against the file's format *fmt (0: not fixed yet; then the first
 * classifiable record fixes it and *fmt_line). 0, or -1 with e set. */
int rec_check(const json_t *o, ft_data_format *fmt, long *fmt_line, long line, rec_error *e);
/* The label of a checked classification record as a string (integers in
 * decimal). */
void rec_label(const json_t *o, char out[REC_LABEL_MAX]);
/* Cleans a checked record in place (data.h says how). Returns 1 when the
 * example is empty afterwards, 0 if not, FT_ENOMEM. */
int rec_clean(json_t *o, ft_data_format f);
/* The record's content as bytes (the format, then each field with a NUL
 * after it) into *buf (growing *cap): the duplicate key; its rec_hash is the
 * example's hash. 0 or FT_ENOMEM. */
int rec_key(const json_t *o, ft_data_format f, char **buf, size_t *n, size_t *cap);

/* Splits the CSV record b[0..n) into fields, unquoting in place; (*fld) gets
 * (start, length) pairs, growing with *fld_cap. Returns the field count, or
 * -1 with *why set (FT_ENOMEM when out of memory). */
int rec_csv_split(char *b, size_t n, size_t **fld, int *fld_cap, const char **why);
/* The format a CSV header names (text+label, prompt+completion, or text;
 * names are matched case-insensitively, ignoring spaces) and the column of
 * each of text, label, prompt, completion in cols (-1: absent); 0 when the
 * header names none. */
ft_data_format rec_csv_header(const char *b, const size_t *fld, int nf, int cols[4]);
/* The row as a record of format f ({"text","label"}, {"prompt","completion"}
 * or {"text"}); NULL when out of memory. */
json_t *rec_csv_object(const char *b, const size_t *fld, ft_data_format f, const int cols[4]);
#endif
