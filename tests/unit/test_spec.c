/* The job spec parser: a full spec comes back resolved, defaults and "auto"
 * resolve as documented, spec_to_json's output parses back to the same spec,
 * and every kind of bad input is refused with the right code and the dotted
 * path of the offending field. */
#include <jansson.h>
#include <string.h>

#include "train/spec.h"
#include "test.h"

static json_t *parse_json(const char *s) {
  json_error_t je;
  json_t *j = json_loads(s, 0, &je);
  if (!j) fprintf(stderr, "bad test JSON: %s: %s\n", je.text, s);
  return j;
}

/* Parses text; expects code and (when code != 0) param. */
static void expect(const char *text, int code, const char *param) {
  json_t *j = parse_json(text);
  ft_spec s;
  ft_error e = {0};
  int rc = spec_parse(j, &s, &e);
  if (rc != code || (code && strcmp(e.param, param) != 0))
    fprintf(stderr, "  for %s\n  got %d param '%s' message '%s'\n", text, rc, e.param, e.message);
  CHECK_EQ_INT(rc, code);
  if (code) {
    CHECK_EQ_STR(e.param, param);
    CHECK(e.message[0] != 0);
  }
  json_decref(j);
}

static ft_spec ok(const char *text) {
  json_t *j = parse_json(text);
  ft_spec s;
  memset(&s, 0, sizeof s);
  ft_error e = {0};
  int rc = spec_parse(j, &s, &e);
  if (rc) fprintf(stderr, "  unexpected error %d %s: %s\n", rc, e.param, e.message);
  CHECK_EQ_INT(rc, 0);
  json_decref(j);
  return s;
}

static void test_defaults(void) {
  ft_spec s = ok("{\"model\":\"gpt2\",\"training_file\":\"file-abc\"}");
  CHECK_EQ_STR(s.model, "gpt2");
  CHECK_EQ_STR(s.training_file, "file-abc");
  CHECK_EQ_STR(s.validation_file, "");
  CHECK_EQ_INT(s.seed, 42);
  CHECK_EQ_INT(s.task, FT_TASK_CAUSAL_LM);
  CHECK_EQ_INT(s.method, FT_METHOD_LORA);
  CHECK_EQ_INT(s.n_epochs, 3);
  CHECK_EQ_INT(s.batch_size, 8);
  CHECK(s.learning_rate == 1e-4f);
  CHECK_EQ_INT(s.lr_scheduler, FT_SCHED_COSINE);
  CHECK(s.warmup_ratio == 0.05f);
  CHECK(s.max_grad_norm == 1.0f);
  CHECK_EQ_INT(s.grad_accum, 1);
  CHECK_EQ_INT(s.max_seq_len, 512);
  CHECK_EQ_INT(s.lora.r, 8);
  CHECK(s.lora.alpha == 16.0f);
  CHECK_EQ_INT(s.ckpt_keep, 3);
  CHECK_EQ_INT(s.eval_every_steps, 0);
  /* auto learning rates depend on the adapter */
  s = ok("{\"model\":\"m\",\"training_file\":\"f\",\"adapter\":{\"type\":\"full\"}}");
  CHECK(s.learning_rate == 2e-5f);
  CHECK_EQ_INT(s.method, FT_METHOD_FULL);
  s =
      ok("{\"model\":\"m\",\"training_file\":\"f\",\"adapter\":{\"type\":\"head\"},"
         "\"method\":{\"type\":\"classification\"}}");
  CHECK(s.learning_rate == 1e-3f);
  CHECK_EQ_INT(s.task, FT_TASK_CLASSIFY);
  /* "auto" and null mean the default */
  s =
      ok("{\"model\":\"m\",\"training_file\":\"f\",\"suffix\":null,\"validation_file\":null,"
         "\"seed\":null,\"metadata\":null,\"method\":{\"type\":\"supervised\",\"supervised\":"
         "{\"hyperparameters\":{\"n_epochs\":\"auto\",\"batch_size\":\"auto\","
         "\"learning_rate\":\"auto\",\"lr_scheduler\":\"auto\"}}}}");
  CHECK_EQ_INT(s.n_epochs, 3);
  CHECK_EQ_INT(s.batch_size, 8);
  CHECK(s.learning_rate == 1e-4f);
  CHECK_EQ_INT(s.seed, 42);
  /* OpenAI's multiplier scales the auto rate */
  s =
      ok("{\"model\":\"m\",\"training_file\":\"f\",\"method\":{\"type\":\"supervised\","
         "\"supervised\":{\"hyperparameters\":{\"learning_rate_multiplier\":2}}}}");
  CHECK(s.learning_rate == 2e-4f);
  /* OpenAI's deprecated top-level hyperparameters */
  s = ok("{\"model\":\"m\",\"training_file\":\"f\",\"hyperparameters\":{\"n_epochs\":5}}");
  CHECK_EQ_INT(s.n_epochs, 5);
}

static const char *full_spec =
    "{\"model\":\"gpt2-tiny\",\"training_file\":\"file-123\",\"validation_file\":\"file-456\","
    "\"suffix\":\"my_run-1\",\"seed\":7,\"metadata\":{\"team\":\"nlp\"},"
    "\"method\":{\"type\":\"supervised\",\"supervised\":{\"hyperparameters\":{"
    "\"n_epochs\":2,\"batch_size\":4,\"learning_rate\":0.0003,\"lr_scheduler\":\"linear\","
    "\"warmup_ratio\":0.1,\"weight_decay\":0.01,\"max_grad_norm\":0.5,"
    "\"gradient_accumulation_steps\":2,\"max_seq_len\":128,\"train_on_inputs\":true}}},"
    "\"adapter\":{\"type\":\"lora\",\"r\":4,\"alpha\":8,\"dropout\":0.1,"
    "\"target_modules\":[\"c_attn\",\"c_proj\"]},"
    "\"evaluation\":{\"eval_every_steps\":10,\"early_stopping\":{\"patience\":2,\"min_delta\":"
    "0.001}},\"checkpoints\":{\"every_steps\":20,\"keep\":2}}";

static void test_full_and_round_trip(void) {
  ft_spec s = ok(full_spec);
  CHECK_EQ_STR(s.validation_file, "file-456");
  CHECK_EQ_STR(s.suffix, "my_run-1");
  CHECK_EQ_INT(s.seed, 7);
  CHECK_EQ_INT(s.n_epochs, 2);
  CHECK_EQ_INT(s.batch_size, 4);
  CHECK(s.learning_rate == 3e-4f);
  CHECK_EQ_INT(s.lr_scheduler, FT_SCHED_LINEAR);
  CHECK(s.warmup_ratio == 0.1f);
  CHECK(s.weight_decay == 0.01f);
  CHECK(s.max_grad_norm == 0.5f);
  CHECK_EQ_INT(s.grad_accum, 2);
  CHECK_EQ_INT(s.max_seq_len, 128);
  CHECK_EQ_INT(s.train_on_inputs, 1);
  CHECK_EQ_INT(s.lora.r, 4);
  CHECK(s.lora.alpha == 8.0f);
  CHECK(s.lora.dropout == 0.1f);
  CHECK_EQ_STR(s.lora_targets, "c_attn,c_proj");
  CHECK_EQ_INT(s.eval_every_steps, 10);
  CHECK_EQ_INT(s.es_patience, 2);
  CHECK(s.es_min_delta == 0.001f);
  CHECK_EQ_INT(s.ckpt_every_steps, 20);
  CHECK_EQ_INT(s.ckpt_keep, 2);

  json_t *j = spec_to_json(&s);
  CHECK(j != NULL);
  /* resolved, readable numbers, no "auto" */
  char *text = json_dumps(j, JSON_SORT_KEYS | JSON_REAL_PRECISION(9));
  CHECK(strstr(text, "auto") == NULL);
  CHECK(strstr(text, "\"learning_rate\": 0.0003,") != NULL); /* not 0.000300000014 */
  CHECK(strstr(text, "\"dropout\": 0.1,") != NULL);
  free(text);
  ft_spec s2;
  memset(&s2, 0, sizeof s2);
  ft_error e = {0};
  CHECK_EQ_INT(spec_parse(j, &s2, &e), 0);
  CHECK_EQ_STR(s2.model, s.model);
  CHECK_EQ_STR(s2.validation_file, s.validation_file);
  CHECK_EQ_STR(s2.suffix, s.suffix);
  CHECK_EQ_INT(s2.n_epochs, s.n_epochs);
  CHECK_EQ_INT(s2.lr_scheduler, s.lr_scheduler);
  CHECK_EQ_INT(s2.ckpt_every_steps, s.ckpt_every_steps);
  CHECK_EQ_INT(s2.es_patience, s.es_patience);
  CHECK(s2.learning_rate == s.learning_rate);
  CHECK(s2.warmup_ratio == s.warmup_ratio && s2.weight_decay == s.weight_decay);
  CHECK(s2.lora.dropout == s.lora.dropout && s2.es_min_delta == s.es_min_delta);
  CHECK_EQ_STR(s2.lora_targets, s.lora_targets);
  CHECK_EQ_INT(s2.seed, 7);
  CHECK_EQ_INT(s2.train_on_inputs, 1);
  json_decref(j);

  /* classification + full round trip */
  s =
      ok("{\"model\":\"m\",\"training_file\":\"f\",\"method\":{\"type\":\"classification\","
         "\"classification\":{\"hyperparameters\":{\"n_epochs\":1}}},\"adapter\":{\"type\":"
         "\"full\"}}");
  j = spec_to_json(&s);
  CHECK(json_is_object(json_object_get(json_object_get(j, "method"), "classification")));
  CHECK(json_object_get(json_object_get(j, "adapter"), "r") == NULL);
  CHECK(json_is_null(json_object_get(j, "validation_file")));
  CHECK_EQ_INT(spec_parse(j, &s2, &e), 0);
  CHECK_EQ_INT(s2.task, FT_TASK_CLASSIFY);
  CHECK_EQ_INT(s2.method, FT_METHOD_FULL);
  CHECK(s2.learning_rate == 2e-5f);
  json_decref(j);
}

#define BASE "\"model\":\"m\",\"training_file\":\"f\""
#define HP(x) \
  "{" BASE ",\"method\":{\"type\":\"supervised\",\"supervised\":{\"hyperparameters\":" x "}}}"
#define HPATH "method.supervised.hyperparameters."

static void test_errors(void) {
  /* shape */
  expect("[1]", FT_ETYPE, "");
  expect("{\"training_file\":\"f\"}", FT_EMISSING, "model");
  expect("{\"model\":\"m\"}", FT_EMISSING, "training_file");
  expect("{\"model\":null,\"training_file\":\"f\"}", FT_EMISSING, "model");
  expect("{\"model\":5,\"training_file\":\"f\"}", FT_ETYPE, "model");
  expect("{\"model\":\"\",\"training_file\":\"f\"}", FT_ERANGE, "model");
  expect("{" BASE ",\"integrations\":[]}", FT_EUNKNOWN_FIELD, "integrations");
  expect("{\"model\":\"m\",\"training_file\":\"../etc/passwd\"}", FT_ERANGE, "training_file");
  expect("{" BASE ",\"validation_file\":\"a/b\"}", FT_ERANGE, "validation_file");
  expect("{" BASE ",\"validation_file\":3}", FT_ETYPE, "validation_file");
  /* suffix, seed, metadata */
  expect("{" BASE ",\"suffix\":\"has space\"}", FT_ERANGE, "suffix");
  expect("{" BASE ",\"suffix\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"}", FT_ERANGE,
         "suffix");
  ok("{" BASE ",\"suffix\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"}"); /* 40 is fine */
  expect("{" BASE ",\"seed\":-1}", FT_ERANGE, "seed");
  expect("{" BASE ",\"seed\":1.5}", FT_ETYPE, "seed");
  expect("{" BASE ",\"seed\":\"1\"}", FT_ETYPE, "seed");
  expect("{" BASE ",\"metadata\":{\"a\":1}}", FT_ETYPE, "metadata.a");
  expect("{" BASE ",\"metadata\":[]}", FT_ETYPE, "metadata");
  expect("{" BASE
         ",\"metadata\":{\"1\":\"\",\"2\":\"\",\"3\":\"\",\"4\":\"\",\"5\":\"\",\"6\":\"\","
         "\"7\":\"\",\"8\":\"\",\"9\":\"\",\"10\":\"\",\"11\":\"\",\"12\":\"\",\"13\":\"\","
         "\"14\":\"\",\"15\":\"\",\"16\":\"\",\"17\":\"\"}}",
         FT_ERANGE, "metadata");
  /* method */
  expect("{" BASE ",\"method\":\"supervised\"}", FT_ETYPE, "method");
  expect("{" BASE ",\"method\":{}}", FT_EMISSING, "method.type");
  expect("{" BASE ",\"method\":{\"type\":\"rl\"}}", FT_ERANGE, "method.type");
  expect("{" BASE ",\"method\":{\"type\":\"dpo\"}}", FT_EUNSUPPORTED, "method.type");
  expect("{" BASE ",\"method\":{\"type\":\"supervised\",\"extra\":1}}", FT_EUNKNOWN_FIELD,
         "method.extra");
  expect("{" BASE ",\"method\":{\"type\":\"supervised\",\"classification\":{}}}", FT_EINVALID,
         "method.classification");
  expect("{" BASE ",\"method\":{\"type\":\"supervised\",\"supervised\":{\"lr\":1}}}",
         FT_EUNKNOWN_FIELD, "method.supervised.lr");
  expect("{" BASE ",\"method\":{\"type\":\"supervised\"},\"hyperparameters\":{}}", FT_EINVALID,
         "hyperparameters");
  expect("{" BASE ",\"hyperparameters\":{\"n_epochs\":0}}", FT_ERANGE, "hyperparameters.n_epochs");
  /* hyperparameters */
  expect(HP("{\"n_epoch\":3}"), FT_EUNKNOWN_FIELD, HPATH "n_epoch");
  expect(HP("{\"n_epochs\":0}"), FT_ERANGE, HPATH "n_epochs");
  expect(HP("{\"n_epochs\":1001}"), FT_ERANGE, HPATH "n_epochs");
  expect(HP("{\"n_epochs\":\"3\"}"), FT_ETYPE, HPATH "n_epochs");
  expect(HP("{\"n_epochs\":true}"), FT_ETYPE, HPATH "n_epochs");
  expect(HP("{\"batch_size\":2.5}"), FT_ETYPE, HPATH "batch_size");
  expect(HP("{\"batch_size\":0}"), FT_ERANGE, HPATH "batch_size");
  expect(HP("{\"learning_rate\":0}"), FT_ERANGE, HPATH "learning_rate");
  expect(HP("{\"learning_rate\":1.5}"), FT_ERANGE, HPATH "learning_rate");
  expect(HP("{\"learning_rate\":\"fast\"}"), FT_ETYPE, HPATH "learning_rate");
  expect(HP("{\"learning_rate\":0.1,\"learning_rate_multiplier\":2}"), FT_EINVALID,
         HPATH "learning_rate_multiplier");
  expect(HP("{\"learning_rate_multiplier\":100000}"), FT_ERANGE, HPATH "learning_rate_multiplier");
  expect(HP("{\"lr_scheduler\":\"step\"}"), FT_ERANGE, HPATH "lr_scheduler");
  expect(HP("{\"warmup_ratio\":1}"), FT_ERANGE, HPATH "warmup_ratio");
  expect(HP("{\"warmup_ratio\":\"auto\"}"), FT_ETYPE, HPATH "warmup_ratio");
  expect(HP("{\"weight_decay\":-0.1}"), FT_ERANGE, HPATH "weight_decay");
  expect(HP("{\"max_grad_norm\":-1}"), FT_ERANGE, HPATH "max_grad_norm");
  expect(HP("{\"gradient_accumulation_steps\":0}"), FT_ERANGE, HPATH "gradient_accumulation_steps");
  expect(HP("{\"max_seq_len\":4}"), FT_ERANGE, HPATH "max_seq_len");
  expect(HP("{\"max_seq_len\":40000}"), FT_ERANGE, HPATH "max_seq_len");
  expect(HP("{\"train_on_inputs\":1}"), FT_ETYPE, HPATH "train_on_inputs");
  expect(HP("[]"), FT_ETYPE, "method.supervised.hyperparameters");
  /* adapter */
  expect("{" BASE ",\"adapter\":{\"type\":\"qlora\"}}", FT_ERANGE, "adapter.type");
  expect("{" BASE ",\"adapter\":{\"rank\":8}}", FT_EUNKNOWN_FIELD, "adapter.rank");
  expect("{" BASE ",\"adapter\":{\"r\":0}}", FT_ERANGE, "adapter.r");
  expect("{" BASE ",\"adapter\":{\"r\":512}}", FT_ERANGE, "adapter.r");
  expect("{" BASE ",\"adapter\":{\"alpha\":0}}", FT_ERANGE, "adapter.alpha");
  expect("{" BASE ",\"adapter\":{\"dropout\":1}}", FT_ERANGE, "adapter.dropout");
  expect("{" BASE ",\"adapter\":{\"type\":\"full\",\"r\":8}}", FT_EINVALID, "adapter.r");
  expect("{" BASE ",\"adapter\":{\"target_modules\":[]}}", FT_ERANGE, "adapter.target_modules");
  expect("{" BASE ",\"adapter\":{\"target_modules\":\"q_proj\"}}", FT_ETYPE,
         "adapter.target_modules");
  expect("{" BASE ",\"adapter\":{\"target_modules\":[\"q_proj\",\"qkv\"]}}", FT_ERANGE,
         "adapter.target_modules[1]");
  expect("{" BASE ",\"adapter\":{\"target_modules\":[\"q_proj\",7]}}", FT_ETYPE,
         "adapter.target_modules[1]");
  /* evaluation and checkpoints */
  expect("{" BASE ",\"evaluation\":{\"every\":1}}", FT_EUNKNOWN_FIELD, "evaluation.every");
  expect("{" BASE ",\"data\":{\"validation_split\":0},\"evaluation\":{\"eval_every_steps\":5}}",
         FT_EINVALID, "evaluation.eval_every_steps");       /* no validation_file nor split */
  ok("{" BASE ",\"evaluation\":{\"eval_every_steps\":5}}"); /* the default 0.1 split */
  expect("{" BASE
         ",\"validation_file\":\"v\",\"evaluation\":{\"early_stopping\":{\"patience\":-1}}}",
         FT_ERANGE, "evaluation.early_stopping.patience");
  expect("{" BASE ",\"validation_file\":\"v\",\"evaluation\":{\"early_stopping\":{\"wait\":1}}}",
         FT_EUNKNOWN_FIELD, "evaluation.early_stopping.wait");
  expect("{" BASE
         ",\"data\":{\"validation_split\":0},\"evaluation\":{\"early_stopping\":{"
         "\"patience\":2}}}",
         FT_EINVALID, "evaluation.early_stopping.patience");
  expect("{" BASE ",\"checkpoints\":{\"keep\":0}}", FT_ERANGE, "checkpoints.keep");
  expect("{" BASE ",\"checkpoints\":{\"every_steps\":-5}}", FT_ERANGE, "checkpoints.every_steps");
  expect("{" BASE ",\"checkpoints\":{\"keep_all\":true}}", FT_EUNKNOWN_FIELD,
         "checkpoints.keep_all");
  expect("{" BASE ",\"checkpoints\":5}", FT_ETYPE, "checkpoints");
}

/* test_file, data.* and evaluation.eval_samples / early_stopping.metric */
static void test_data_and_eval(void) {
  ft_spec s = ok("{" BASE "}");
  CHECK(s.validation_split == 0.1f); /* no validation_file: 10% split off */
  CHECK(s.test_split == 0.0f);
  CHECK_EQ_INT(s.drop_long, 0);
  CHECK_EQ_INT(s.clean, 1);
  CHECK_EQ_INT(s.packing, 1);
  CHECK_EQ_INT(s.eval_samples, 64);
  CHECK_EQ_STR(s.es_metric, "valid_loss");
  CHECK_EQ_STR(s.test_file, "");
  s = ok("{" BASE ",\"validation_file\":\"v\"}");
  CHECK(s.validation_split == 0.0f); /* with a validation_file: none */
  s = ok("{" BASE
         ",\"test_file\":\"file-t\",\"data\":{\"validation_split\":0.2,"
         "\"test_split\":0,\"truncation\":\"drop\",\"clean\":false,\"packing\":false},"
         "\"evaluation\":{\"eval_every_steps\":3,\"eval_samples\":16,\"early_stopping\":"
         "{\"metric\":\"valid_mean_token_accuracy\",\"patience\":2,\"min_delta\":0.01}}}");
  CHECK_EQ_STR(s.test_file, "file-t");
  CHECK(s.validation_split == 0.2f);
  CHECK_EQ_INT(s.drop_long, 1);
  CHECK_EQ_INT(s.clean, 0);
  CHECK_EQ_INT(s.packing, 0);
  CHECK_EQ_INT(s.eval_samples, 16);
  CHECK_EQ_STR(s.es_metric, "valid_mean_token_accuracy");
  /* round trip: every new field written back, resolved */
  json_t *j = spec_to_json(&s);
  json_t *d = json_object_get(j, "data");
  CHECK(json_is_object(d));
  CHECK_EQ_STR(json_string_value(json_object_get(d, "truncation")), "drop");
  CHECK(json_is_false(json_object_get(d, "clean")));
  CHECK(json_is_false(json_object_get(d, "packing")));
  CHECK_EQ_STR(json_string_value(json_object_get(j, "test_file")), "file-t");
  CHECK_EQ_INT(
      json_integer_value(json_object_get(json_object_get(j, "evaluation"), "eval_samples")), 16);
  ft_spec s2;
  ft_error e = {0};
  CHECK_EQ_INT(spec_parse(j, &s2, &e), 0);
  CHECK(s2.validation_split == s.validation_split && s2.test_split == s.test_split);
  CHECK_EQ_INT(s2.drop_long, 1);
  CHECK_EQ_INT(s2.clean, 0);
  CHECK_EQ_INT(s2.packing, 0);
  CHECK_EQ_INT(s2.eval_samples, 16);
  CHECK_EQ_STR(s2.es_metric, s.es_metric);
  CHECK_EQ_STR(s2.test_file, "file-t");
  json_decref(j);
  /* the resolved default split of a spec with a validation_file reads back */
  s = ok("{" BASE ",\"validation_file\":\"v\"}");
  j = spec_to_json(&s);
  CHECK_EQ_INT(spec_parse(j, &s2, &e), 0);
  CHECK(s2.validation_split == 0.0f);
  json_decref(j);
  s = ok("{" BASE
         ",\"method\":{\"type\":\"classification\"},\"evaluation\":{"
         "\"early_stopping\":{\"metric\":\"valid_f1_macro\",\"patience\":1}}}");
  CHECK_EQ_STR(s.es_metric, "valid_f1_macro");
  ok("{" BASE ",\"test_file\":\"t\",\"data\":{\"test_split\":0}}");

  expect("{" BASE ",\"test_file\":\"a/b\"}", FT_ERANGE, "test_file");
  expect("{" BASE ",\"test_file\":1}", FT_ETYPE, "test_file");
  expect("{" BASE ",\"data\":[]}", FT_ETYPE, "data");
  expect("{" BASE ",\"data\":{\"split\":0.1}}", FT_EUNKNOWN_FIELD, "data.split");
  expect("{" BASE ",\"data\":{\"validation_split\":0.6}}", FT_ERANGE, "data.validation_split");
  expect("{" BASE ",\"data\":{\"validation_split\":-0.1}}", FT_ERANGE, "data.validation_split");
  expect("{" BASE ",\"data\":{\"validation_split\":\"0.1\"}}", FT_ETYPE, "data.validation_split");
  expect("{" BASE ",\"data\":{\"test_split\":0.51}}", FT_ERANGE, "data.test_split");
  expect("{" BASE ",\"data\":{\"validation_split\":0.45,\"test_split\":0.45}}", FT_ERANGE,
         "data.test_split"); /* sum 0.9 */
  expect("{" BASE ",\"validation_file\":\"v\",\"data\":{\"validation_split\":0.1}}", FT_EINVALID,
         "data.validation_split");
  expect("{" BASE ",\"test_file\":\"t\",\"data\":{\"test_split\":0.1}}", FT_EINVALID,
         "data.test_split");
  expect("{" BASE ",\"data\":{\"truncation\":\"cut\"}}", FT_ERANGE, "data.truncation");
  expect("{" BASE ",\"data\":{\"clean\":1}}", FT_ETYPE, "data.clean");
  expect("{" BASE ",\"data\":{\"packing\":\"yes\"}}", FT_ETYPE, "data.packing");
  expect("{" BASE ",\"evaluation\":{\"eval_samples\":0}}", FT_ERANGE, "evaluation.eval_samples");
  expect("{" BASE ",\"evaluation\":{\"eval_samples\":1.5}}", FT_ETYPE, "evaluation.eval_samples");
  expect("{" BASE ",\"evaluation\":{\"early_stopping\":{\"metric\":\"loss\"}}}", FT_ERANGE,
         "evaluation.early_stopping.metric");
  expect("{" BASE ",\"evaluation\":{\"early_stopping\":{\"metric\":\"valid_accuracy\"}}}",
         FT_EINVALID, "evaluation.early_stopping.metric"); /* supervised */
  expect("{" BASE ",\"evaluation\":{\"early_stopping\":{\"metric\":\"valid_f1_macro\"}}}",
         FT_EINVALID, "evaluation.early_stopping.metric");
}

static void test_check_model(void) {
  ft_config gpt2 = {.model_type = "gpt2", .max_position = 256};
  ft_config llama = {.model_type = "llama", .max_position = 2048};
  ft_error e = {0};
  ft_spec s = ok("{" BASE
                 ",\"method\":{\"type\":\"supervised\",\"supervised\":"
                 "{\"hyperparameters\":{\"max_seq_len\":1024}}}}");
  ft_spec s2 = s;
  ft_spec h = ok("{" BASE ",\"adapter\":{\"type\":\"head\"}}");
  ft_config untied = llama;
  untied.tie_embeddings = 0;
  gpt2.tie_embeddings = 1;
  CHECK_EQ_INT(spec_check_model(&h, &gpt2, &e), FT_EINVALID); /* head = the tied embeddings */
  CHECK_EQ_STR(e.param, "adapter.type");
  CHECK_EQ_INT(spec_check_model(&h, &untied, &e), 0);
  CHECK(h.learning_rate == 1e-3f);
  CHECK_EQ_INT(spec_check_model(&s, &gpt2, &e), 0);
  CHECK_EQ_STR(s.lora_targets, "c_attn");
  CHECK_EQ_INT(s.lora.targets, FT_LORA_C_ATTN);
  CHECK_EQ_INT(s.max_seq_len, 256); /* clamped */
  CHECK_EQ_INT(spec_check_model(&s2, &llama, &e), 0);
  CHECK_EQ_STR(s2.lora_targets, "q_proj,v_proj");
  CHECK_EQ_INT(s2.lora.targets, FT_LORA_Q | FT_LORA_V);
  CHECK_EQ_INT(s2.max_seq_len, 1024);

  s = ok("{" BASE ",\"adapter\":{\"target_modules\":[\"q_proj\",\"o_proj\",\"down_proj\"]}}");
  s2 = s;
  CHECK_EQ_INT(spec_check_model(&s, &llama, &e), 0);
  CHECK_EQ_INT(s.lora.targets, FT_LORA_Q | FT_LORA_O | FT_LORA_DOWN);
  CHECK_EQ_INT(spec_check_model(&s2, &gpt2, &e), FT_ERANGE); /* llama names on GPT-2 */
  CHECK_EQ_STR(e.param, "adapter.target_modules[0]");

  s = ok("{" BASE ",\"adapter\":{\"target_modules\":[\"c_attn\",\"c_proj\",\"c_fc\"]}}");
  CHECK_EQ_INT(spec_check_model(&s, &gpt2, &e), 0);
  CHECK_EQ_INT(s.lora.targets,
               FT_LORA_C_ATTN | FT_LORA_ATTN_C_PROJ | FT_LORA_MLP_C_PROJ | FT_LORA_C_FC);

  s = ok("{" BASE ",\"adapter\":{\"target_modules\":\"all-linear\"}}");
  CHECK_EQ_INT(spec_check_model(&s, &llama, &e), 0);
  CHECK_EQ_INT(s.lora.targets, FT_LORA_Q | FT_LORA_K | FT_LORA_V | FT_LORA_O | FT_LORA_GATE |
                                   FT_LORA_UP | FT_LORA_DOWN);
  json_t *j = spec_to_json(&s);
  CHECK_EQ_STR(json_string_value(json_object_get(json_object_get(j, "adapter"), "target_modules")),
               "all-linear");
  json_decref(j);

  /* after the check the resolved targets are written out */
  s = ok("{" BASE "}");
  CHECK_EQ_INT(spec_check_model(&s, &llama, &e), 0);
  j = spec_to_json(&s);
  json_t *tm = json_object_get(json_object_get(j, "adapter"), "target_modules");
  CHECK(json_array_size(tm) == 2);
  CHECK_EQ_STR(json_string_value(json_array_get(tm, 1)), "v_proj");
  json_decref(j);
}

/* hyperparameters.token_budget: trains until that many tokens,
 * replacing n_epochs; spec_to_json writes it instead of n_epochs. */
static void test_token_budget(void) {
  ft_spec s = ok("{\"model\":\"m\",\"training_file\":\"f\"}");
  CHECK_EQ_INT(s.token_budget, 0);
  json_t *j = spec_to_json(&s);
  json_t *h = json_object_get(json_object_get(json_object_get(j, "method"), "supervised"),
                              "hyperparameters");
  CHECK(json_object_get(h, "token_budget") == NULL);
  CHECK(json_is_integer(json_object_get(h, "n_epochs")));
  json_decref(j);

  s = ok("{\"model\":\"m\",\"training_file\":\"f\",\"method\":{\"type\":\"supervised\","
         "\"supervised\":{\"hyperparameters\":{\"token_budget\":5000000000,\"n_epochs\":\"auto\"}}}}");
  CHECK_EQ_INT(s.token_budget, 5000000000LL);
  s = ok("{\"model\":\"m\",\"training_file\":\"f\",\"hyperparameters\":{\"token_budget\":1,"
         "\"n_epochs\":null}}");
  CHECK_EQ_INT(s.token_budget, 1);
  s = ok("{\"model\":\"m\",\"training_file\":\"f\",\"method\":{\"type\":\"supervised\","
         "\"supervised\":{\"hyperparameters\":{\"token_budget\":20000}}}}");
  CHECK_EQ_INT(s.token_budget, 20000);
  j = spec_to_json(&s);
  h = json_object_get(json_object_get(json_object_get(j, "method"), "supervised"),
                      "hyperparameters");
  CHECK_EQ_INT(json_integer_value(json_object_get(h, "token_budget")), 20000);
  CHECK(json_object_get(h, "n_epochs") == NULL);
  ft_spec s2;
  ft_error e = {0};
  CHECK_EQ_INT(spec_parse(j, &s2, &e), 0); /* the resolved form parses back */
  CHECK_EQ_INT(s2.token_budget, 20000);
  json_decref(j);

  expect(HP("{\"token_budget\":0}"), FT_ERANGE, HPATH "token_budget");
  expect(HP("{\"token_budget\":-5}"), FT_ERANGE, HPATH "token_budget");
  expect(HP("{\"token_budget\":1000000000001}"), FT_ERANGE, HPATH "token_budget");
  expect(HP("{\"token_budget\":1.5}"), FT_ETYPE, HPATH "token_budget");
  expect(HP("{\"token_budget\":\"auto\"}"), FT_ETYPE, HPATH "token_budget");
  expect(HP("{\"token_budget\":\"100\"}"), FT_ETYPE, HPATH "token_budget");
  expect(HP("{\"token_budget\":100,\"n_epochs\":2}"), FT_EINVALID, HPATH "token_budget");
  expect("{" BASE ",\"hyperparameters\":{\"token_budget\":100,\"n_epochs\":1}}", FT_EINVALID,
         "hyperparameters.token_budget");
  expect("{" BASE ",\"training\":{\"token_budget\":100}}", FT_EUNKNOWN_FIELD, "training");
}

int main(void) {
  RUN(test_token_budget);
  RUN(test_defaults);
  RUN(test_full_and_round_trip);
  RUN(test_errors);
  RUN(test_data_and_eval);
  RUN(test_check_model);
  return test_report();
}
