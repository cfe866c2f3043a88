// Minimal typing of tar-stream's default export, for tar.ts.
declare const tarStream: { extract(opts?: unknown): unknown; pack(opts?: unknown): unknown };
export default tarStream;
