import assert from "node:assert/strict";
import { Code, isCode } from "../errdefs/mod.ts";
import { parseHookState, renderTemplate, type TemplateContext } from "./mod.ts";

const ctx: TemplateContext = {
  state: {
    id: "c1",
    pid: 42,
    bundle: "/run/b/c1/",
    status: "created",
    annotations: { "io.x/k": 'v"q' },
  },
  root: "rootfs",
};

Deno.test("oci-hook: renders containerd's template functions", () => {
  assert.equal(
    renderTemplate(
      '{{id}}-{{ pid }}:{{rootfs}}:{{bundle}}:{{status}}:{{annotation "io.x/k"}}',
      ctx,
    ),
    'c1-42:/run/b/c1/rootfs:/run/b/c1/:created:v"q',
  );
  assert.equal(renderTemplate('[{{annotation "none"}}] no action', ctx), "[] no action");
  assert.equal(renderTemplate("a  {{- id -}}  b", ctx), "ac1b");
  assert.equal(renderTemplate("{{rootfs}}", { ...ctx, root: "/abs/root" }), "/abs/root");
  assert.equal(renderTemplate("{ not } {{id}}", ctx), "{ not } c1");
});

Deno.test("oci-hook: what containerd's templates cannot say is InvalidArgument", () => {
  for (const bad of ["{{.ID}}", "{{nope}}", "{{id", '{{id "x"}}', "{{annotation}}"]) {
    assert.throws(() => renderTemplate(bad, ctx), (e) => isCode(e, Code.InvalidArgument), bad);
  }
  const enc = (s: string) => new TextEncoder().encode(s);
  assert.throws(() => parseHookState(enc("not json")), (e) => isCode(e, Code.InvalidArgument));
  assert.throws(() => parseHookState(enc('{"id":"x"}')), (e) => isCode(e, Code.InvalidArgument));
  assert.equal(parseHookState(enc('{"id":"x","bundle":"/b"}')).id, "x");
});
