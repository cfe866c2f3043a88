/**
 * Run by store_test.ts: writes an ingest slowly and waits to be killed.
 *
 * @module
 */

import { ContentStore } from "../mod.ts";

const [root, ref] = Deno.args;
const store = await ContentStore.open(root);
const w = await store.writer(ref, { expectedSize: 4 << 20 });
const chunk = new Uint8Array(1 << 20).fill(7);
await w.write(chunk);
await w.write(chunk);
console.log("written");
// Never commits: the parent kills this process with SIGKILL.
await new Promise(() => setTimeout(() => {}, 60_000));
