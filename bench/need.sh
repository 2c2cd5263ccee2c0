# Sourced by the bench scripts: `need COMMAND DEBIAN_PACKAGE` installs the package when the
# command is missing (apt-get update once per script).
need() {
  command -v "$1" > /dev/null && return
  [ -n "${APT_UPDATED:-}" ] || { apt-get update -qq; APT_UPDATED=1; }
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" > /dev/null
}
