#!/bin/sh
# build-sandbox.sh DIR: builds the sandbox helper, nex-sandbox (C, static), into DIR.
# Without a C compiler that links statically (Debian: gcc and libc6-dev) it leaves DIR
# without one (nexlet-native then sandboxes through itself, a few milliseconds slower
# per start) and says so; with CI set, that fails.
set -eu
dir=${1:?usage: build-sandbox.sh DIR}
src=$(dirname "$0")/../cmd/nex-sandbox/nex-sandbox.c
cc=${CC:-cc}
rm -f "$dir/nex-sandbox" # never an old helper of another build beside a new nexlet
mkdir -p "$dir"
# $cc unquoted: CC may carry arguments ("ccache gcc")
if ! $cc -std=c11 -O2 -static -Wall -Wextra -D_FORTIFY_SOURCE=2 -fstack-protector-strong -o "$dir/nex-sandbox" "$src"; then
	rm -f "$dir/nex-sandbox"
	echo "build-sandbox.sh: $cc could not build a static nex-sandbox (Debian: apt-get install gcc libc6-dev)" >&2
	[ -z "${CI:-}" ] || { echo "build-sandbox.sh: CI is set: failing" >&2; exit 1; }
	echo "build-sandbox.sh: nexlet-native will sandbox workloads through itself" >&2
fi
