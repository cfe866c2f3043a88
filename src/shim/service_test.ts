import assert from "node:assert/strict";
import { Task } from "../gen/containerd/task/v2/shim_pb.ts";
import { TaskService } from "./service.ts";

Deno.test("shim service: every method of containerd's Task service has a handler", () => {
  const proto = TaskService.prototype as unknown as Record<string, unknown>;
  const missing = Task.methods.filter((m) => typeof proto[m.localName] !== "function");
  assert.deepEqual(missing.map((m) => m.name), []);
});
