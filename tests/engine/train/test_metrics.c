/* Classification metrics against hand-computed values (sklearn's
 * definitions), the argmax of logits, the JSON shape, and perplexity. */
#include <jansson.h>
#include <math.h>
#include <string.h>

#include "train/metrics.h"
#include "test.h"

/* 3 classes, 9 examples:
 *   truth 0 0 0 1 1 2 2 2 2
 *   pred  0 0 1 1 2 2 2 0 1
 * confusion (rows truth): [2 1 0] [0 1 1] [1 1 2]; every class is predicted
 * 3 times; supports 3, 2, 4. */
static void test_three_classes(void) {
  static const int truth[] = {0, 0, 0, 1, 1, 2, 2, 2, 2}, pred[] = {0, 0, 1, 1, 2, 2, 2, 0, 1};
  ft_cls_metrics *m = metrics_cls_new(3);
  CHECK(m != NULL);
  if (!m) return;
  for (int i = 0; i < 9; i++) metrics_cls_add(m, truth[i], pred[i]);
  metrics_cls_add(m, 3, 0);  /* out of range: ignored */
  metrics_cls_add(m, 0, -1); /* likewise */
  metrics_cls_finish(m);
  CHECK_EQ_INT(m->n, 9);
  static const long cm[9] = {2, 1, 0, 0, 1, 1, 1, 1, 2};
  for (int i = 0; i < 9; i++) CHECK_EQ_INT(m->confusion[i], cm[i]);
  CHECK_NEAR(m->accuracy, 5.0 / 9, 1e-12);
  CHECK_NEAR(m->precision[0], 2.0 / 3, 1e-12);
  CHECK_NEAR(m->precision[1], 1.0 / 3, 1e-12);
  CHECK_NEAR(m->precision[2], 2.0 / 3, 1e-12);
  CHECK_NEAR(m->recall[0], 2.0 / 3, 1e-12);
  CHECK_NEAR(m->recall[1], 1.0 / 2, 1e-12);
  CHECK_NEAR(m->recall[2], 1.0 / 2, 1e-12);
  CHECK_NEAR(m->f1[0], 2.0 / 3, 1e-12);
  CHECK_NEAR(m->f1[1], 2.0 / 5, 1e-12);
  CHECK_NEAR(m->f1[2], 4.0 / 7, 1e-12);
  CHECK(m->support[0] == 3 && m->support[1] == 2 && m->support[2] == 4);
  CHECK_NEAR(m->precision_macro, 5.0 / 9, 1e-12);
  CHECK_NEAR(m->recall_macro, 5.0 / 9, 1e-12);
  CHECK_NEAR(m->f1_macro, 172.0 / 315, 1e-12);
  CHECK_NEAR(m->precision_weighted, 16.0 / 27, 1e-12);
  CHECK_NEAR(m->recall_weighted, 5.0 / 9, 1e-12);
  CHECK_NEAR(m->f1_weighted, 178.0 / 315, 1e-12);

  static const char names[3][64] = {"neg", "neu", "pos"};
  json_t *j = metrics_cls_json(m, "test_", names);
  CHECK_NEAR(json_real_value(json_object_get(j, "test_accuracy")), 5.0 / 9, 1e-12);
  CHECK_NEAR(json_real_value(json_object_get(j, "test_f1_macro")), 172.0 / 315, 1e-12);
  CHECK_NEAR(json_real_value(json_object_get(j, "test_f1_weighted")), 178.0 / 315, 1e-12);
  CHECK_NEAR(json_real_value(json_object_get(j, "test_precision_macro")), 5.0 / 9, 1e-12);
  json_t *neu = json_object_get(json_object_get(j, "per_class"), "neu");
  CHECK_NEAR(json_real_value(json_object_get(neu, "f1")), 0.4, 1e-12);
  CHECK_EQ_INT(json_integer_value(json_object_get(neu, "support")), 2);
  json_t *c = json_object_get(j, "confusion_matrix");
  CHECK_EQ_INT(json_array_size(c), 3);
  CHECK_EQ_INT(json_integer_value(json_array_get(json_array_get(c, 2), 0)), 1);
  CHECK_EQ_STR(json_string_value(json_array_get(json_object_get(j, "labels"), 2)), "pos");
  json_decref(j);

  /* reset starts over */
  metrics_cls_reset(m);
  metrics_cls_add(m, 1, 1);
  metrics_cls_finish(m);
  CHECK_EQ_INT(m->n, 1);
  CHECK_NEAR(m->accuracy, 1.0, 0);
  metrics_cls_free(m);
}

/* A class never present and never predicted: precision, recall and F1 0
 * (sklearn's zero_division=0); it still counts in the macro mean, not in
 * the weighted one. */
static void test_absent_class(void) {
  ft_cls_metrics *m = metrics_cls_new(2);
  for (int i = 0; i < 4; i++) metrics_cls_add(m, 0, 0);
  metrics_cls_finish(m);
  CHECK_NEAR(m->accuracy, 1.0, 0);
  CHECK(m->precision[1] == 0 && m->recall[1] == 0 && m->f1[1] == 0);
  CHECK_NEAR(m->f1_macro, 0.5, 1e-12);
  CHECK_NEAR(m->f1_weighted, 1.0, 1e-12);
  /* no examples at all: accuracy and weighted means are undefined (NaN,
   * JSON null) */
  metrics_cls_reset(m);
  metrics_cls_finish(m);
  CHECK(isnan(m->accuracy) && isnan(m->f1_weighted));
  json_t *j = metrics_cls_json(m, "", NULL);
  CHECK(json_is_null(json_object_get(j, "accuracy")));
  CHECK_EQ_STR(json_string_value(json_array_get(json_object_get(j, "labels"), 1)), "1");
  json_decref(j);
  metrics_cls_free(m);
}

static void test_logits(void) {
  ft_cls_metrics *m = metrics_cls_new(3);
  /* argmax per row; a tie goes to the first class */
  static const float logits[4 * 3] = {0.1f,  2.0f,  -1.0f, 5.0f, 5.0f, 1.0f,
                                      -3.0f, -2.0f, -1.0f, 0.0f, 0.0f, 0.0f};
  static const int32_t labels[4] = {1, 1, 2, 0};
  metrics_cls_add_logits(m, logits, labels, 4);
  metrics_cls_finish(m);
  CHECK_EQ_INT(m->n, 4);
  CHECK_EQ_INT(m->confusion[1 * 3 + 1], 1); /* row 0: 1 -> 1 */
  CHECK_EQ_INT(m->confusion[1 * 3 + 0], 1); /* row 1: tie 0/1 -> 0 */
  CHECK_EQ_INT(m->confusion[2 * 3 + 2], 1);
  CHECK_EQ_INT(m->confusion[0 * 3 + 0], 1);
  CHECK_NEAR(m->accuracy, 0.75, 1e-12);
  metrics_cls_free(m);
  CHECK(metrics_cls_new(0) == NULL);
}

static void test_perplexity(void) {
  CHECK_NEAR(metrics_perplexity(0.0), 1.0, 0);
  CHECK_NEAR(metrics_perplexity(2.0), 7.38905609893065, 1e-12);
  CHECK(isinf(metrics_perplexity(1000.0)));
  CHECK(isnan(metrics_perplexity(NAN)));
}

int main(void) {
  RUN(test_three_classes);
  RUN(test_absent_class);
  RUN(test_logits);
  RUN(test_perplexity);
  return test_report();
}
