/* The store's files: one row per upload, written only once its bytes are
 * durable at files/<id> (the caller's temp file, fsync, rename), so a row
 * always names bytes on disk; the caller removes the bytes after a delete.
 * A file that a job not yet finished uses cannot be deleted. Rows carry
 * their owner (tenant, "default" when none). */
#include "store_int.h"

static int file_get_locked(store *s, const char *id, json_t **file) {
  return st_get_json(s, st_file_json, file, "SELECT " FILE_COLS " FROM files WHERE id = ?", "s",
                     id);
}

int store_file_insert(store *s, const char *id, int64_t bytes, const char *filename,
                      const char *purpose, json_t **file) {
  return store_file_insert_tenant(s, NULL, id, bytes, filename, purpose, "processed", NULL, NULL,
                                  file);
}

int store_file_insert_tenant(store *s, const char *tenant, const char *id, int64_t bytes,
                             const char *filename, const char *purpose, const char *status,
                             const char *status_details, const json_t *validation, json_t **file) {
  int rc = st_begin(s, file);
  if (rc) return rc;
  rc = st_exec(s, FT_EDB,
               "INSERT INTO files (id, bytes, created_at, filename, purpose, status, "
               "status_details, validation, tenant) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
               "sIIssssjs", id, bytes, store_now(), filename, purpose, status, status_details,
               validation, tenant ? tenant : "default");
  if (!rc && file) rc = file_get_locked(s, id, file);
  return st_end(s, rc, file);
}

int store_file_get(store *s, const char *id, json_t **file) {
  return st_unlock(s, file_get_locked(st_lock(s), id, file));
}

int store_file_list(store *s, const char *after, int limit, json_t **list) {
  return store_file_list_tenant(s, NULL, after, limit, list);
}

int store_file_list_tenant(store *s, const char *tenant, const char *after, int limit,
                           json_t **list) {
  return st_list_page(s, ST_FILES, tenant, after, limit, list);
}

int store_file_delete(store *s, const char *id, ft_error *err) {
  int rc = st_begin(s, NULL);
  if (rc) return ft_error_set(err, rc, NULL, NULL);
  char job[64];
  rc = st_get(s,
              "SELECT id FROM jobs WHERE (training_file = ?1 OR validation_file = ?1 OR "
              "test_file = ?1) AND status NOT IN " TERMINAL_SQL " LIMIT 1",
              "s", "t", id, job, sizeof job);
  if (!rc)
    rc = ft_error_set(err, FT_EBAD_STATE, "file_id",
                      "file %s is used by job %s, which is not finished", id, job);
  else if (rc == FT_ENOT_FOUND) {
    rc = st_exec(s, FT_ENOT_FOUND, "DELETE FROM files WHERE id = ?", "s", id);
    if (rc == FT_ENOT_FOUND) ft_error_set(err, rc, "file_id", "no such file: %s", id);
  }
  rc = st_end(s, rc, NULL);
  if (rc == FT_EDB) ft_error_set(err, FT_EDB, NULL, NULL);
  return rc;
}

int st_file_exists_locked(store *s, const char *id) {
  return st_get(s, "SELECT 1 FROM files WHERE id = ?", "s", "", id);
}
