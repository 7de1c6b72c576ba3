# Sourced by ./mvnw and ./phost: exports JAVA_HOME pointing at a JDK >= 25 (the final FFM API).
# Order: $JAVA_HOME, `java` on PATH, then /usr/lib/jvm/* and /opt/*jdk* (newest first).
# Fails with one line when none is found.
phost_java_feature() { # prints the feature version of the JDK at $1, or nothing
  [ -x "$1/bin/javac" ] || return 0
  "$1/bin/java" -XshowSettings:properties -version 2>&1 |
    sed -n 's/^ *java\.specification\.version = \([0-9]*\).*/\1/p' | head -n 1
}
phost_find_jdk() {
  local c v candidates=()
  [ -n "${JAVA_HOME:-}" ] && candidates+=("$JAVA_HOME")
  if command -v java >/dev/null 2>&1; then
    candidates+=("$(dirname "$(dirname "$(readlink -f "$(command -v java)")")")")
  fi
  for c in $(ls -d /usr/lib/jvm/* /opt/*jdk* 2>/dev/null | sort -rV); do candidates+=("$c"); done
  for c in "${candidates[@]}"; do
    v=$(phost_java_feature "$c")
    if [ -n "$v" ] && [ "$v" -ge 25 ]; then export JAVA_HOME="$c"; return 0; fi
  done
  echo "phost: no JDK >= 25 found (looked at \$JAVA_HOME, PATH, /usr/lib/jvm, /opt); install Temurin 25 or set JAVA_HOME" >&2
  return 1
}
phost_find_jdk || exit 1
