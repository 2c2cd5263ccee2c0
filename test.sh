#!/usr/bin/env bash
# Runs kindling's whole test suite: formatting, lints, unit and end-to-end tests.
# First it installs, only where missing, every package the tests drive (Debian packages via
# apt-get; PyPI tools into .venv/). Safe to run again and again.
set -euo pipefail
cd "$(dirname "$0")"

# Debian packages whose programs the tests run as real consumers of kindling's output.
APT_PACKAGES=(
  openssh-client   # ssh-keygen: checks the SSH keys kindling accepts
  bsdutils         # script: runs kindling on a pseudo-terminal to test its prompts
)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "test.sh: installing ${missing[*]}" >&2
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace
