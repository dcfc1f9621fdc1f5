#!/usr/bin/env bash
# Regenerates the generated seeds (seed-* files written by fuzz_corpus_gen: layers made
# with the tests' TarBuilder, their entry tables and merged trees, LMDB records) into
# tests/fuzz/corpus/. The hand-written seeds (reference, json, credentials) and the
# crash-* regression inputs are kept as they are.
#   tests/fuzz/make_corpus.sh [BUILD_DIR]      (default build-fuzz)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-$here/../../build-fuzz}
cmake --build "$build" --target fuzz_corpus_gen >/dev/null
for d in layer_indexer layer_entry merged_tree store_records; do
  mkdir -p "$here/corpus/$d"
  rm -f "$here/corpus/$d"/seed-*
done
"$build/fuzz_corpus_gen" "$here/corpus"
du -sh "$here/corpus"
