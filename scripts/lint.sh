#!/usr/bin/env bash
# Style and static analysis: clang-format (no diff allowed) and cppcheck (no findings).
set -euo pipefail
cd "$(dirname "$0")/.."
files=$(git ls-files 'src/*.c' 'src/*.h' 'tools/*.c' 'tools/*.h' 'tests/*.c' 'tests/*.h' 'bench/*.c' 'bench/*.h')
clang-format --dry-run -Werror $files
cppcheck --quiet --error-exitcode=1 --std=c11 --enable=warning,portability,performance \
  --inline-suppr --suppress=missingIncludeSystem -Isrc -Itools -Itests -Ibuild/generated \
  src tools tests bench
