# Sourced by the deps scripts: apt_install WHO PACKAGE... installs the Debian packages given
# (all missing, the caller checked), as root or through sudo, with apt-get update first. WHO
# names the calling script in messages.
apt_install() {
  local who=$1
  shift
  if ! command -v apt-get >/dev/null; then
    echo "$who: not a Debian-based system; install the equivalents of: $*" >&2
    return 1
  fi
  local as_root
  if [[ $(id -u) -eq 0 ]]; then
    as_root=()
  elif command -v sudo >/dev/null; then
    as_root=(sudo)
  else
    echo "$who: missing $*; run as root or install sudo" >&2
    return 1
  fi
  echo "$who: installing $*"
  "${as_root[@]}" apt-get update
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@"
}
