#!/bin/sh
# Regenerates src/gen/ from proto/ with protoc and protoc-gen-es. The output is
# deterministic: the same .proto files always give the same TypeScript.
set -eu
cd "$(dirname "$0")/.."
rm -rf src/gen
mkdir -p src/gen
# Plugin options:
# - target=ts: Deno runs TypeScript directly, so no .js/.d.ts pairs.
# - import_extension=ts: Deno resolves only explicit file extensions.
# - no json_types: berth speaks protobuf binary on every wire (gRPC, ttrpc) and
#   only ever renders JSON through toJson(), so the extra JSON shape types
#   would be dead weight in src/gen.
# google/protobuf/*.proto come from protoc's own include path; the generated
# code imports them from "@bufbuild/protobuf/wkt".
files=$(cd proto && find . -name '*.proto' | sed 's|^\./||' | LC_ALL=C sort)
(cd proto && protoc \
  --plugin=protoc-gen-es=../scripts/protoc-gen-es \
  --es_out=../src/gen \
  --es_opt=target=ts,import_extension=ts \
  $files)
echo "generated $(find src/gen -name '*.ts' | wc -l) files into src/gen"
