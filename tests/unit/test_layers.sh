# The include layers, read from the sources (no build needed):
#   server/  no circle between its modules: x.c and x.h are one module x (and
#            a module split SQLite-style, x_int.h and x_*.c, is still x), and
#            x -> y when a file of x includes "y.h" from server/; a circle is
#            named, e.g. "auth -> http -> auth";
#   common/  includes nothing from engine/, server/ or worker/;
#   engine/  (every sub-folder) includes no server/ or worker/ header and none
#            of <sqlite3.h>, <microhttpd.h>, <uv.h>: the engine is a library
#            the daemon and the worker both link.
# The same check then runs on a copy with a circle and both kinds of bad
# include planted, and must find each of them, so it can fail.
source "$(dirname "$0")/../lib.sh"

# The quoted includes of a file, one per line.
quoted() { sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$1"; }

# module ROOT FILE: the server module a file belongs to: x.c and x.h are x;
# a module split SQLite-style keeps its internal header x_int.h and its
# x_*.c files (those with no header of their own) in module x.
module() {
  local root=$1 m
  m=$(basename "$2") m=${m%.*}
  if [[ $m == *_int ]]; then
    m=${m%_int}
  elif [ ! -f "$root/server/$m.h" ] && [[ $m == *_* ]] && [ -f "$root/server/${m%%_*}_int.h" ]; then
    m=${m%%_*}
  fi
  echo "$m"
}

# layers ROOT: prints one line per violation under ROOT (nothing when clean).
layers() {
  local root=$1 f inc m t
  local -A edges=() state=()
  # server/: the module graph
  for f in "$root"/server/*.[ch]; do
    [ -e "$f" ] || continue
    m=$(module "$root" "$f")
    while read -r inc; do
      [[ $inc == */* || ! -f $root/server/$inc ]] && continue
      t=$(module "$root" "$inc")
      [ "$t" != "$m" ] && [[ " ${edges[$m]:-} " != *" $t "* ]] && edges[$m]+=" $t"
    done < <(quoted "$f")
  done
  # depth-first search; a grey node met again closes a circle
  local -a path=()
  visit() {
    local n=$1 t i
    state[$n]=grey
    path+=("$n")
    for t in ${edges[$n]:-}; do
      if [ "${state[$t]:-}" = grey ]; then
        local cyc=""
        for ((i = ${#path[@]} - 1; i >= 0; i--)); do
          cyc="${path[i]} -> $cyc"
          [ "${path[i]}" = "$t" ] && break
        done
        echo "server: include circle ${cyc}$t"
      elif [ -z "${state[$t]:-}" ]; then
        visit "$t"
      fi
    done
    unset 'path[${#path[@]}-1]'
    state[$n]=black
  }
  for m in $(printf '%s\n' "${!edges[@]}" | sort); do
    [ -z "${state[$m]:-}" ] && visit "$m"
  done
  # the headers of the layers above, by file name
  local -A upper=() lower=()
  while read -r f; do upper[$(basename "$f")]=${f#"$root"/}; done \
    < <(find "$root/server" "$root/worker" -name '*.h' 2>/dev/null)
  while read -r f; do lower[$(basename "$f")]=${f#"$root"/}; done \
    < <(find "$root/engine" -name '*.h' 2>/dev/null)
  # common/: nothing from engine/, server/, worker/
  for f in "$root"/common/*.[ch]; do
    [ -e "$f" ] || continue
    while read -r inc; do
      [ -f "$root/common/$inc" ] && continue
      t=$(basename "$inc")
      if [[ $inc == *engine/* || $inc == *server/* || $inc == *worker/* ]] ||
        [ -n "${upper[$t]:-}" ] || [ -n "${lower[$t]:-}" ]; then
        echo "common: ${f#"$root"/} includes \"$inc\" (${upper[$t]:-${lower[$t]:-$inc}})"
      fi
    done < <(quoted "$f")
  done
  # engine/, recursively: no server/ or worker/ header, no daemon library
  local eng com r
  eng=$(realpath "$root/engine") com=$(realpath "$root/common")
  while read -r f; do
    while read -r inc; do
      # found beside the file or from engine/'s root, and inside engine/ or common/: fine
      r=""
      for t in "$(dirname "$f")/$inc" "$root/engine/$inc" "$root/common/$inc"; do
        [ -f "$t" ] && r=$(realpath "$t") && break
      done
      [[ $r == "$eng"/* || $r == "$com"/* ]] && continue
      t=$(basename "$inc")
      if [[ $inc == *server/* || $inc == *worker/* ]] || [ -n "${upper[$t]:-}" ]; then
        echo "engine: ${f#"$root"/} includes \"$inc\" (${upper[$t]:-$inc})"
      fi
    done < <(quoted "$f")
    grep -Hn '^[[:space:]]*#[[:space:]]*include[[:space:]]*<\(sqlite3\|microhttpd\|uv\)\.h>' "$f" |
      sed "s|^$root/|engine: |; s|:\([0-9]*\):| line \1: |"
  done < <(find "$root/engine" -name '*.[ch]' | sort)
}

out=$(layers "$FT_SRC")
check_eq "server/ has no include circle; common/ and engine/ include no layer above" "$out" ""
[ -n "$out" ] && echo "$out" >&2

# the check can fail: a copy with a circle (http -> obs -> http), common/
# including a server header, and engine/ including <sqlite3.h> and a server
# header from a sub-folder
B=$T_DIR/broken
mkdir -p "$B"
cp -r "$FT_SRC/server" "$FT_SRC/common" "$FT_SRC/engine" "$FT_SRC/worker" "$B/"
printf '#include "http.h"\n' >>"$B/server/obs.h"
printf '#include "http.h"\n' >>"$B/common/ft_buf.h"
mkdir -p "$B/engine/sub"
printf '#include <sqlite3.h>\n#include "../../server/store.h"\n' >"$B/engine/sub/bad.c"
out=$(layers "$B")
check "a planted circle is found and named" grep -qx 'server: include circle http -> obs -> http' <<<"$out"
check "common/ including a server header is found" grep -q '^common: common/ft_buf.h includes "http.h" (server/http.h)' <<<"$out"
check "engine/ including <sqlite3.h> is found, in a sub-folder" grep -q '^engine: engine/sub/bad.c line 1: #include <sqlite3.h>' <<<"$out"
check "engine/ including a server header is found" grep -q '^engine: engine/sub/bad.c includes "../../server/store.h"' <<<"$out"
check_eq "nothing else is reported for the copy" "$(wc -l <<<"$out")" 4
T_DONE=1
