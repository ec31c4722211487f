/* Training checkpoints: a directory <ckpt_dir>/ckpt-<step>/ with
 *   trainable.safetensors  the trained tensors under their HF/PEFT names
 *   optimizer.safetensors  AdamW moments "<name>.exp_avg", "<name>.exp_avg_sq"
 *                          (metadata "step": the optimizer's step count)
 *   trainer_state.bin      magic "FTCKPT\r\n", version, the loop's state (step,
 *                          data position, RNG, counters, best metric), size and
 *                          CRC-32 of both safetensors files, CRC-32 of itself
 *   trainer_state.json     the same for people and the API (not trusted on load)
 * Written into ckpt-<step>.tmp/, every file fsynced, the directory renamed to
 * ckpt-<step>, then the parent fsynced (STYLE.md 12). Loading verifies every
 * size and checksum first and refuses a torn or corrupt checkpoint with
 * FT_EFORMAT before touching the model. */
#ifndef FT_CKPT_H
#define FT_CKPT_H
#include <stddef.h>
#include <stdint.h>

#include "ft_err.h"
#include "nn/model.h"
#include "train/optim.h"

#define CKPT_VERSION 2 /* 2 added best_step; version 1 files still load */

#include <jansson.h>

/* Everything the training loop needs besides weights and moments to go on
 * exactly where it stopped. */
typedef struct {
  long step; /* optimizer steps done */
  long total_steps;
  long epoch;          /* data position: the next batch to read is */
  long batch_index;    /*   batch batch_index of epoch epoch */
  uint64_t rng;        /* state of the per-micro-batch dropout seed stream */
  long trained_tokens; /* cumulative non-padding tokens */
  long skipped_steps;  /* steps skipped for a non-finite loss */
  long nonfinite_run;  /* of them in a row up to now */
  double best_metric;  /* best value of the tracked validation metric; NaN when none */
  long best_step;      /* step of that evaluation; 0 when none */
  long bad_evals;      /* evaluations since it improved (early stopping) */
  double last_train_loss;
  double last_valid_loss; /* NaN when none */
  uint64_t fingerprint;   /* the caller's hash of the job's shape; checked on resume */
  /* Not part of the binary state: extra keys for trainer_state.json (labels,
   * method, ...), written by ckpt_save; not set by loading. May be NULL. */
  const json_t *info;
} ft_ckpt_state;

/* Writes <ckpt_dir>/ckpt-<st->step>/ for the tensors o optimizes (weights
 * from their ft_param, moments from o). An existing ckpt-<step> is replaced.
 * The final path goes to path (size cap) if not NULL. */
int ckpt_save(const char *ckpt_dir, const ft_ckpt_state *st, const optim *o, char *path, size_t cap,
              ft_error *err);
/* Verifies dir and loads it: state into *st, weights into the tensors o
 * optimizes, moments and step count into o. FT_EFORMAT for a missing, torn
 * or corrupt checkpoint (nothing is changed then), FT_ESHAPE when its
 * tensors are not those of o. */
int ckpt_load(const char *dir, ft_ckpt_state *st, optim *o, ft_error *err);
/* Reads and verifies only trainer_state.bin. */
int ckpt_read_state(const char *dir, ft_ckpt_state *st, ft_error *err);
/* Verifies a whole checkpoint (state file, sizes and CRC-32s of both tensor
 * files) without loading it: 0 or FT_EFORMAT. */
int ckpt_verify(const char *dir, ft_error *err);
/* Loads only the trained tensors of a verified checkpoint into the
 * trainable tensors of m (by name); state and moments are not read. */
int ckpt_load_weights(const char *dir, ft_model *m, ft_error *err);
/* trainer_state.json of dir (new reference), or NULL. */
json_t *ckpt_read_info(const char *dir);
/* Removes all but the `keep` newest ckpt-<step> directories of ckpt_dir
 * and ckpt-<keep_step> (the best; 0 for none), and any leftover
 * ckpt-<step>.tmp. keep <= 0 removes none. */
int ckpt_prune(const char *ckpt_dir, int keep, long keep_step, ft_error *err);
/* The steps of the ckpt-<step> directories of ckpt_dir, newest first
 * (*steps malloc'd, caller frees; NULL when none). */
int ckpt_list(const char *ckpt_dir, long **steps, size_t *n, ft_error *err);
/* The newest complete and intact ckpt-<step> of ckpt_dir into path (a torn
 * or corrupt newer one is passed over); FT_ENOT_FOUND if none. */
int ckpt_latest(const char *ckpt_dir, char *path, size_t cap, ft_error *err);

uint32_t ckpt_crc32(uint32_t crc, const void *buf, size_t n); /* zlib's CRC-32; crc 0 to start */
#endif
