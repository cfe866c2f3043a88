import assert from "node:assert/strict";
import { fromBinary } from "@bufbuild/protobuf";
import { DeleteResponseSchema } from "../gen/containerd/task/v2/shim_pb.ts";
import { encodeDeleteResponse } from "./delete.ts";

Deno.test("delete: the hand-encoded DeleteResponse decodes as containerd's message", () => {
  const at = Date.UTC(2026, 10, 23, 18, 40, 1, 234);
  const r = fromBinary(DeleteResponseSchema, encodeDeleteResponse(4242, 137, at));
  assert.equal(r.pid, 4242);
  assert.equal(r.exitStatus, 137);
  assert.equal(Number(r.exitedAt!.seconds), Math.floor(at / 1000));
  assert.equal(r.exitedAt!.nanos, 234_000_000);
  const zero = fromBinary(DeleteResponseSchema, encodeDeleteResponse(0, 0, 5000));
  assert.equal(zero.pid, 0);
  assert.equal(Number(zero.exitedAt!.seconds), 5);
});
