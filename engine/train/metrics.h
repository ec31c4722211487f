/* Evaluation metrics beyond the loss: classification accuracy, precision,
 * recall and F1 per class, macro and weighted, with the confusion matrix
 * (sklearn's definitions: a class never predicted has precision 0, never
 * present has recall 0, and F1 is 0 when precision + recall is 0; macro is
 * the plain mean over classes, weighted the mean weighted by support), and
 * perplexity for language models. */
#ifndef FT_METRICS_H
#define FT_METRICS_H
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "ft_err.h"

typedef struct {
  int k;           /* classes */
  long n;          /* examples counted */
  long *confusion; /* (k,k): row = true class, column = predicted class */
  /* filled by metrics_cls_finish */
  double accuracy;
  double *precision, *recall, *f1; /* (k) */
  long *support;                   /* (k) examples whose true class is i */
  double precision_macro, recall_macro, f1_macro;
  double precision_weighted, recall_weighted, f1_weighted;
} ft_cls_metrics;

/* A zeroed accumulator for k classes (k >= 1); NULL when out of memory. */
ft_cls_metrics *metrics_cls_new(int k);
void metrics_cls_free(ft_cls_metrics *m);
void metrics_cls_reset(ft_cls_metrics *m);
/* Counts one example; labels outside [0, k) are ignored. */
void metrics_cls_add(ft_cls_metrics *m, int truth, int predicted);
/* Counts a batch from (rows, k) logits: the prediction is the argmax (first
 * on ties). */
void metrics_cls_add_logits(ft_cls_metrics *m, const float *logits, const int32_t *labels,
                            int rows);
/* Computes the derived numbers from the counts. */
void metrics_cls_finish(ft_cls_metrics *m);
/* {"<prefix>accuracy", "<prefix>precision_macro", "<prefix>recall_macro",
 *  "<prefix>f1_macro", "<prefix>precision_weighted", "<prefix>recall_weighted",
 *  "<prefix>f1_weighted", "per_class": {label: {precision, recall, f1, support}},
 *  "confusion_matrix": [[...]] (rows true, columns predicted), "labels": [...]}
 * after metrics_cls_finish. names: (k) label names or NULL ("0", "1", ...). */
json_t *metrics_cls_json(const ft_cls_metrics *m, const char *prefix, const char (*names)[64]);

/* exp(mean token loss); +inf when it overflows, NaN for NaN. */
double metrics_perplexity(double loss);
#endif
