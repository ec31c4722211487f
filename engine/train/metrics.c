/* Classification metrics and perplexity (see metrics.h). */
#include "train/metrics.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

ft_cls_metrics *metrics_cls_new(int k) {
  if (k < 1) return NULL;
  ft_cls_metrics *m = calloc(1, sizeof *m);
  if (!m) return NULL;
  m->k = k;
  m->confusion = calloc((size_t)k * (size_t)k, sizeof *m->confusion);
  m->precision = calloc((size_t)k, sizeof *m->precision);
  m->recall = calloc((size_t)k, sizeof *m->recall);
  m->f1 = calloc((size_t)k, sizeof *m->f1);
  m->support = calloc((size_t)k, sizeof *m->support);
  if (!m->confusion || !m->precision || !m->recall || !m->f1 || !m->support) {
    metrics_cls_free(m);
    return NULL;
  }
  return m;
}

void metrics_cls_free(ft_cls_metrics *m) {
  if (!m) return;
  free(m->confusion);
  free(m->precision);
  free(m->recall);
  free(m->f1);
  free(m->support);
  free(m);
}

void metrics_cls_reset(ft_cls_metrics *m) {
  size_t k = (size_t)m->k;
  memset(m->confusion, 0, k * k * sizeof *m->confusion);
  memset(m->precision, 0, k * sizeof *m->precision);
  memset(m->recall, 0, k * sizeof *m->recall);
  memset(m->f1, 0, k * sizeof *m->f1);
  memset(m->support, 0, k * sizeof *m->support);
  m->n = 0;
  m->accuracy = m->precision_macro = m->recall_macro = m->f1_macro = 0;
  m->precision_weighted = m->recall_weighted = m->f1_weighted = 0;
}

void metrics_cls_add(ft_cls_metrics *m, int truth, int predicted) {
  if (truth < 0 || truth >= m->k || predicted < 0 || predicted >= m->k) return;
  m->confusion[(size_t)truth * (size_t)m->k + (size_t)predicted]++;
  m->n++;
}

void metrics_cls_add_logits(ft_cls_metrics *m, const float *logits, const int32_t *labels,
                            int rows) {
  for (int r = 0; r < rows; r++) {
    const float *l = logits + (size_t)r * (size_t)m->k;
    int best = 0;
    for (int c = 1; c < m->k; c++)
      if (l[c] > l[best]) best = c;
    metrics_cls_add(m, labels[r], best);
  }
}

void metrics_cls_finish(ft_cls_metrics *m) {
  size_t k = (size_t)m->k;
  long correct = 0;
  double pm = 0, rm = 0, fm = 0, pw = 0, rw = 0, fw = 0;
  for (size_t i = 0; i < k; i++) {
    long tp = m->confusion[i * k + i], pred = 0, sup = 0;
    for (size_t j = 0; j < k; j++) {
      pred += m->confusion[j * k + i];
      sup += m->confusion[i * k + j];
    }
    correct += tp;
    double p = pred ? (double)tp / (double)pred : 0.0;
    double r = sup ? (double)tp / (double)sup : 0.0;
    double f = p + r > 0 ? 2.0 * p * r / (p + r) : 0.0;
    m->precision[i] = p;
    m->recall[i] = r;
    m->f1[i] = f;
    m->support[i] = sup;
    pm += p;
    rm += r;
    fm += f;
    pw += p * (double)sup;
    rw += r * (double)sup;
    fw += f * (double)sup;
  }
  double n = (double)m->n;
  m->accuracy = m->n ? (double)correct / n : NAN;
  m->precision_macro = pm / (double)k;
  m->recall_macro = rm / (double)k;
  m->f1_macro = fm / (double)k;
  m->precision_weighted = m->n ? pw / n : NAN;
  m->recall_weighted = m->n ? rw / n : NAN;
  m->f1_weighted = m->n ? fw / n : NAN;
}

static json_t *num(double x) { return isfinite(x) ? json_real(x) : json_null(); }

json_t *metrics_cls_json(const ft_cls_metrics *m, const char *prefix, const char (*names)[64]) {
  json_t *j = json_object();
  if (!j) return NULL;
  char key[96];
#define PUT(name, v)                                               \
  do {                                                             \
    snprintf(key, sizeof key, "%s%s", prefix ? prefix : "", name); \
    json_object_set_new(j, key, num(v));                           \
  } while (0)
  PUT("accuracy", m->accuracy);
  PUT("precision_macro", m->precision_macro);
  PUT("recall_macro", m->recall_macro);
  PUT("f1_macro", m->f1_macro);
  PUT("precision_weighted", m->precision_weighted);
  PUT("recall_weighted", m->recall_weighted);
  PUT("f1_weighted", m->f1_weighted);
#undef PUT
  json_t *pc = json_object(), *cm = json_array(), *labels = json_array();
  size_t k = (size_t)m->k;
  for (size_t i = 0; i < k; i++) {
    char nb[64];
    const char *name = names ? names[i] : NULL;
    if (!name || !name[0]) {
      snprintf(nb, sizeof nb, "%zu", i);
      name = nb;
    }
    json_array_append_new(labels, json_string(name));
    json_object_set_new(
        pc, name,
        json_pack("{s:o, s:o, s:o, s:I}", "precision", num(m->precision[i]), "recall",
                  num(m->recall[i]), "f1", num(m->f1[i]), "support", (json_int_t)m->support[i]));
    json_t *row = json_array();
    for (size_t c = 0; c < k; c++)
      json_array_append_new(row, json_integer(m->confusion[i * k + c]));
    json_array_append_new(cm, row);
  }
  json_object_set_new(j, "per_class", pc);
  json_object_set_new(j, "confusion_matrix", cm);
  json_object_set_new(j, "labels", labels);
  return j;
}

double metrics_perplexity(double loss) {
  if (isnan(loss)) return NAN;
  if (loss > 700) return INFINITY;
  return exp(loss);
}
