/* Dataset validation at upload time: an incremental checker fed the bytes of
 * an upload chunk by chunk (a line may span chunks; nothing but the current
 * line is held), that detects the file's format from its first classifiable
 * line and checks every line against it, naming the line of each problem.
 *
 * It accepts what data.h's loader accepts (both check records with record.h's
 * one checker) and says why not otherwise, with
 * the error codes of OpenAI's dataset-check cookbook. JSONL formats: chat
 * {"messages":[{"role":"system|user|assistant","content","name"?,"weight"?}]},
 * prompt/completion, text, classification {"text","label"}. CSV (the caller
 * says so: text/csv uploads, .csv names) with a header naming text and label,
 * text alone, or prompt and completion (RFC 4180 quoting, quoted newlines).
 *
 * The report (a jansson object):
 *   {"format": "chat"|"prompt_completion"|"text"|"classification"|null,
 *    "examples": N,        records without an error
 *    "errors": [{"line": N, "code": "...", "message": "..."}],  first 100
 *    "error_count": N,     records with an error (one error per record)
 *    "duplicates": N,      valid records byte-identical to an earlier one
 *    "empty_lines": N,     blank lines, skipped
 *    "cleaning": {"duplicates": N, "empty": N},  what training's cleaning
 *                          (data.h) will drop: valid records empty after
 *                          cleaning, and duplicates of an earlier cleaned one
 *                          (by 64-bit content hash here)
 *    "label_counts": {"label": N, ...}}   classification only: labels
 *                          trimmed as cleaning does, of records not empty
 *                          after cleaning
 * Codes: invalid_json, invalid_utf8, data_type, missing_messages_list,
 * message_missing_key, message_unrecognized_key, unrecognized_role,
 * missing_content, example_missing_assistant_message, empty_text,
 * missing_label, mixed_formats, unknown_format, csv_header, csv_columns, and
 * two of our own: line_too_long, csv_quoting. Lines are 1-based physical
 * lines; a CSV record spanning lines is named by its first. */
#ifndef FT_DSVAL_H
#define FT_DSVAL_H
#include <jansson.h>
#include <stddef.h>

#define DSVAL_MAX_LINE (8u << 20) /* default cap on one line (CSV: one record) */
#define DSVAL_MAX_ERRORS 100      /* errors listed in the report */

typedef struct dsval dsval;

/* csv: parse as CSV, else JSONL. max_line: cap in bytes (0: DSVAL_MAX_LINE).
 * 0 or FT_ENOMEM. Caller frees with dsval_free. */
int dsval_new(dsval **out, int csv, size_t max_line);
/* Feeds the next n bytes of the file. 0 or FT_ENOMEM (then the validator is
 * unusable). */
int dsval_feed(dsval *v, const void *p, size_t n);
/* Ends the file (a last line without '\n' counts) and gives the report, a new
 * reference the caller releases. Call once. 0 or FT_ENOMEM. */
int dsval_finish(dsval *v, json_t **report);
void dsval_free(dsval *v);

/* Whether a file name says CSV (ends in ".csv", any case). */
int dsval_name_is_csv(const char *filename);
/* A one-line summary of a report's errors into buf, naming the first error's
 * line: "line 3: invalid_json: ... (and 4 more errors)". Returns the
 * report's error_count (buf is "" when 0). */
long dsval_summary(const json_t *report, char *buf, size_t n);
#endif
