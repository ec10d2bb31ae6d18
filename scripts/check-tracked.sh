#!/usr/bin/env bash
# Fails when the repository tracks build output: an executable binary (ELF, Mach-O, PE,
# or any executable file holding NUL bytes) or any file over 1 MiB. Run from a checkout
# (make lint runs it); pass a directory to check another checkout.
set -euo pipefail
cd "${1:-.}"
limit=$((1024 * 1024))
bad=0
while IFS= read -r -d '' f; do
	[ -f "$f" ] || continue
	size=$(wc -c <"$f")
	if [ "$size" -gt "$limit" ]; then
		echo "tracked file over 1 MiB: $f ($size bytes)"
		bad=1
		continue
	fi
	magic=$(head -c 4 "$f" | od -An -tx1 | tr -d ' \n')
	case "$magic" in
	7f454c46 | cffaedfe | cefaedfe | feedface | feedfacf | 4d5a*)
		echo "tracked executable binary: $f"
		bad=1
		continue
		;;
	esac
	if [ -x "$f" ] && head -c 8000 "$f" | tr -d '\000' | cmp -s - <(head -c 8000 "$f"); then
		: # an executable text file (a script)
	elif [ -x "$f" ]; then
		echo "tracked executable binary: $f"
		bad=1
	fi
done < <(git ls-files -z)
if [ "$bad" -ne 0 ]; then
	echo "build output does not belong in git: git rm --cached it and list it in .gitignore"
	exit 1
fi
