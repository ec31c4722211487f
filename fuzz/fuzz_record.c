/* libFuzzer target: the record checker (engine/data/record.c) shared by upload
 * validation and training: each input is a few JSONL lines or CSV records
 * (the first byte says which), run through check, label, clean and key like
 * data.c does, so the later steps see what an accepted record can hold. */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "data/record.h"
#include "ft_utf8.h"

static void one_record(json_t *o, ft_data_format *fmt, long *fmt_line, long line, char **kb,
                       size_t *kcap) {
  rec_error e = {0};
  if (rec_check(o, fmt, fmt_line, line, &e) != 0) {
    if (!e.code) abort();
    return;
  }
  char label[REC_LABEL_MAX];
  if (*fmt == FT_DATA_CLASSIFY) rec_label(o, label);
  size_t kn = 0;
  if (rec_key(o, *fmt, kb, &kn, kcap)) return;
  rec_hash(*kb, kn);
  if (rec_clean(o, *fmt) < 0) return;
  if (rec_key(o, *fmt, kb, &kn, kcap)) return;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  int csv = data[0] & 1;
  data++, size--;
  char *copy = malloc(size + 1);
  if (!copy) return 0;
  memcpy(copy, data, size);
  copy[size] = 0;
  ft_data_format fmt = 0;
  long fmt_line = 0, line = 0;
  char *kb = NULL;
  size_t kcap = 0;
  size_t *fld = NULL;
  int fld_cap = 0, cols[4] = {-1, -1, -1, -1};
  ft_data_format csv_fmt = 0;
  char *p = copy, *end = copy + size;
  while (p < end) {
    /* a JSONL line ends at '\n'; a CSV record at a '\n' outside quotes */
    char *q = p;
    int inq = 0;
    while (q < end && (*q != '\n' || inq)) {
      if (csv && *q == '"') inq = !inq;
      q++;
    }
    size_t n = (size_t)(q - p);
    line++;
    if (!csv) {
      rec_error e = {0};
      json_t *o = rec_parse_jsonl(p, n, &e);
      if (o) {
        one_record(o, &fmt, &fmt_line, line, &kb, &kcap);
        json_decref(o);
      } else if (!e.code) {
        abort();
      }
    } else {
      const char *why = NULL;
      int nf = rec_csv_split(p, n, &fld, &fld_cap, &why);
      if (nf >= 0 && line == 1) {
        csv_fmt = rec_csv_header(p, fld, nf, cols);
      } else if (nf >= 0 && csv_fmt) {
        int need = 0;
        for (int i = 0; i < 4; i++)
          if (cols[i] >= need) need = cols[i] + 1;
        if (nf >= need) {
          json_t *o = rec_csv_object(p, fld, csv_fmt, cols);
          if (o) {
            one_record(o, &fmt, &fmt_line, line, &kb, &kcap);
            json_decref(o);
          }
        }
      } else if (nf < 0 && !why) {
        abort();
      }
    }
    p = q + 1;
  }
  size_t bad;
  ft_utf8_valid(copy, size, &bad);
  free(fld);
  free(kb);
  free(copy);
  return 0;
}
