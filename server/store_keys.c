/* The store's API keys and the tenant of files and jobs (auth.c). A key is
 * stored by the hex SHA-256 of the whole key, never the key itself; a
 * revoked key stays revoked and stays counted (once keys are in use they
 * stay required). Names and tenants arrive checked (auth_name_ok). */
#include <stdio.h>
#include <string.h>

#include "store_int.h"

int store_key_insert(store *s, const char *id, const char *name, const char *tenant, int admin,
                     const char *hash, const char *prefix, ft_error *err) {
  int rc = st_begin(s, NULL);
  if (!rc) {
    rc = st_get(s, "SELECT 1 FROM api_keys WHERE name = ?", "s", "", name);
    if (!rc)
      rc = ft_error_set(err, FT_EBAD_STATE, "name", "a key named \"%s\" exists already", name);
    else if (rc == FT_ENOT_FOUND)
      rc = st_exec(s, FT_EDB,
                   "INSERT INTO api_keys (id, name, tenant, admin, hash, prefix, created_at) "
                   "VALUES (?, ?, ?, ?, ?, ?, ?)",
                   "sssissI", id, name, tenant, admin ? 1 : 0, hash, prefix, store_now());
    rc = st_end(s, rc, NULL);
  }
  if (rc == FT_EDB) ft_error_set(err, FT_EDB, NULL, "recording the key: database error");
  return rc;
}

int store_key_list(store *s, json_t **keys) {
  *keys = json_array();
  if (!*keys) return FT_ENOMEM;
  return st_unlock(s, st_rows(st_lock(s), st_key_json, *keys,
                              "SELECT " KEY_COLS " FROM api_keys ORDER BY n", ""));
}

int store_key_revoke(store *s, const char *id_or_name, json_t **key) {
  int rc = st_begin(s, key);
  if (rc) return rc;
  rc = st_exec(s, FT_ENOT_FOUND,
               "UPDATE api_keys SET revoked_at = coalesce(revoked_at, ?2) "
               "WHERE id = ?1 OR name = ?1",
               "sI", id_or_name, store_now());
  if (!rc && key)
    rc = st_get_json(s, st_key_json, key,
                     "SELECT " KEY_COLS " FROM api_keys WHERE id = ?1 OR name = ?1", "s",
                     id_or_name);
  return st_end(s, rc, key);
}

int store_key_find(store *s, const char *hash, char *id, size_t id_n, char *tenant, size_t tenant_n,
                   int *admin) {
  return st_unlock(
      s, st_get(st_lock(s),
                "SELECT id, tenant, admin FROM api_keys WHERE hash = ? AND revoked_at IS NULL", "s",
                "tti", hash, id, id_n, tenant, tenant_n, admin));
}

int store_key_count(store *s, int *n) {
  *n = 0;
  return st_unlock(s, st_get(st_lock(s), "SELECT count(*) FROM api_keys", "", "i", n));
}

int store_tenant_of(store *s, const char *kind, const char *id, char *tenant, size_t n) {
  if (n) tenant[0] = 0;
  const char *sql = !strcmp(kind, "file")  ? "SELECT tenant FROM files WHERE id = ?"
                    : !strcmp(kind, "job") ? "SELECT tenant FROM jobs WHERE id = ?"
                                           : NULL;
  if (!sql) return FT_EINVALID;
  return st_unlock(s, st_get(st_lock(s), sql, "s", "t", id, tenant, n));
}
