#!/bin/sh
# Regenerates src/gen/ from proto/ with protoc and protoc-gen-es. The output is
# deterministic: the same .proto files always give the same TypeScript.
set -eu
cd "$(dirname "$0")/.."
rm -rf src/gen
mkdir -p src/gen
files=$(cd proto && find . -name '*.proto' | sed 's|^\./||' | LC_ALL=C sort)
(cd proto && protoc \
  --plugin=protoc-gen-es=../scripts/protoc-gen-es \
  --es_out=../src/gen \
  --es_opt=target=ts,import_extension=ts \
  $files)
echo "generated $(find src/gen -name '*.ts' | wc -l) files into src/gen"
