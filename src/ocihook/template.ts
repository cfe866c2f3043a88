/**
 * The template language containerd's `oci-hook` renders in a hook's
 * arguments and environment: Go text/template actions limited to the
 * functions containerd defines (`{{id}}`, `{{pid}}`, `{{rootfs}}`,
 * `{{bundle}}`, `{{status}}`, `{{annotation "key"}}`). Anything else in
 * `{{ }}` is an error rather than text passed through, as Go's parser
 * would refuse it too.
 * @module
 */

import { invalidArgument } from "../errdefs/mod.ts";

/** The OCI state a runtime writes on a hook's stdin (the fields templates read). */
export interface HookState {
  ociVersion?: string;
  id: string;
  status?: string;
  pid?: number;
  bundle: string;
  annotations?: Record<string, string>;
}

/** What the templates can name: the state plus the spec's root path. */
export interface TemplateContext {
  state: HookState;
  /** `root.path` of the bundle's config.json (relative to the bundle unless absolute). */
  root: string;
}

/** `{{ fn }}` or `{{ fn "arg" }}`, with Go's `{{-`/`-}}` trim markers. */
const ACTION = /\{\{(-\s)?\s*([A-Za-z_][A-Za-z0-9_]*)(?:\s+"((?:[^"\\]|\\.)*)")?\s*(\s-)?\}\}/y;

function call(ctx: TemplateContext, fn: string, arg: string | undefined, source: string): string {
  const noArg = (v: string) => {
    if (arg !== undefined) throw invalidArgument(`template "${source}": ${fn} takes no argument`);
    return v;
  };
  switch (fn) {
    case "id":
      return noArg(ctx.state.id);
    case "bundle":
      return noArg(ctx.state.bundle);
    case "pid":
      return noArg(String(ctx.state.pid ?? 0));
    case "status":
      return noArg(ctx.state.status ?? "");
    case "rootfs":
      return noArg(
        ctx.root.startsWith("/") ? ctx.root : `${ctx.state.bundle.replace(/\/+$/, "")}/${ctx.root}`,
      );
    case "annotation":
      if (arg === undefined) {
        throw invalidArgument(`template "${source}": annotation needs a "key"`);
      }
      return ctx.state.annotations?.[JSON.parse(`"${arg}"`)] ?? "";
    default:
      throw invalidArgument(
        `template "${source}": function "${fn}" not defined (id, pid, rootfs, bundle, status, annotation "key")`,
      );
  }
}

/** Renders one string; throws InvalidArgument for an action containerd does not define. */
export function renderTemplate(source: string, ctx: TemplateContext): string {
  let out = "";
  let i = 0;
  while (i < source.length) {
    const open = source.indexOf("{{", i);
    if (open < 0) {
      out += source.slice(i);
      break;
    }
    ACTION.lastIndex = open;
    const m = ACTION.exec(source);
    if (!m) throw invalidArgument(`template "${source}": unsupported action at offset ${open}`);
    let text = source.slice(i, open);
    if (m[1]) text = text.trimEnd();
    out += text + call(ctx, m[2], m[3], source);
    i = ACTION.lastIndex;
    if (m[4]) { while (i < source.length && /\s/.test(source[i])) i++; }
  }
  return out;
}
