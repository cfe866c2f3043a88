/**
 * A lean gRPC unary client over node:http2 on a unix socket, the same for
 * both daemons, to count round trips per second: requests are encoded once
 * and each call is one request with no per-call queues (src/grpc's client
 * is the general one; this keeps the client's own cost low and equal).
 * @module
 */

import { GRPC_NAMESPACE_KEY } from "../src/namespaces/mod.ts";
import http2 from "node:http2";
import net from "node:net";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import type { DescMessage } from "@bufbuild/protobuf";
import {
  GetContainerRequestSchema,
  GetContainerResponseSchema,
} from "../src/gen/containerd/services/containers/v1/containers_pb.ts";
import { VersionResponseSchema } from "../src/gen/containerd/services/version/v1/version_pb.ts";
import { closeSession } from "../src/grpc/client.ts";
import { decodeStatusMessage, frameMessage } from "../src/grpc/framing.ts";
import { Unavailable } from "./interleave.ts";

/** A unary method to call, with its request already encoded. */
export interface UnaryCall {
  path: string;
  request: Uint8Array;
  response: DescMessage;
}

/** containerd.services.version.v1.Version/Version (empty request). */
export function versionCall(): UnaryCall {
  return {
    path: "/containerd.services.version.v1.Version/Version",
    request: new Uint8Array(),
    response: VersionResponseSchema,
  };
}

/** containerd.services.containers.v1.Containers/Get of container `id`. */
export function containersGetCall(id: string): UnaryCall {
  return {
    path: "/containerd.services.containers.v1.Containers/Get",
    request: toBinary(GetContainerRequestSchema, create(GetContainerRequestSchema, { id })),
    response: GetContainerResponseSchema,
  };
}

/** One HTTP/2 connection to a gRPC unix socket. */
export class GrpcConnection {
  #session: http2.ClientHttp2Session;
  #namespace: string;

  constructor(socketPath: string, namespace: string) {
    this.#namespace = namespace;
    this.#session = http2.connect("http://localhost", {
      createConnection: () => net.connect(socketPath),
    });
    // Errors surface through the requests; keep the session's own quiet.
    this.#session.on("error", () => {});
  }

  /** Calls `c` once; resolves when the response is decoded, rejects on a non-OK status. */
  call(c: UnaryCall): Promise<void> {
    return new Promise((resolve, reject) => {
      const req = this.#session.request({
        ":method": "POST",
        ":path": c.path,
        "content-type": "application/grpc",
        "te": "trailers",
        [GRPC_NAMESPACE_KEY]: this.#namespace,
      });
      const chunks: Uint8Array[] = [];
      let grpcStatus: string | undefined;
      let grpcMessage = "";
      const takeStatus = (h: http2.IncomingHttpHeaders) => {
        if (h["grpc-status"] !== undefined) {
          grpcStatus = String(h["grpc-status"]);
          grpcMessage = decodeStatusMessage(String(h["grpc-message"] ?? ""));
        }
      };
      req.on("response", takeStatus); // a trailers-only response carries status here
      req.on("trailers", takeStatus);
      req.on("data", (chunk: Uint8Array) => chunks.push(chunk));
      req.on("error", reject);
      req.on("end", () => {
        if (grpcStatus !== "0") {
          reject(
            new Error(`${c.path}: grpc-status ${grpcStatus ?? "missing"} ${grpcMessage}`.trim()),
          );
          return;
        }
        const body = concat(chunks);
        if (body.length < 5) {
          reject(new Error(`${c.path}: response has no message`));
          return;
        }
        const len = new DataView(body.buffer, body.byteOffset).getUint32(1);
        try {
          fromBinary(c.response, body.subarray(5, 5 + len));
        } catch (err) {
          reject(new Error(`${c.path}: undecodable response: ${(err as Error).message}`));
          return;
        }
        resolve();
      });
      req.end(frameMessage(c.request));
    });
  }

  /** Closes the connection; streams still pending after a second are cut. */
  close(): Promise<void> {
    return closeSession(this.#session);
  }
}

function concat(chunks: Uint8Array[]): Uint8Array {
  if (chunks.length === 1) return chunks[0];
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let off = 0;
  for (const c of chunks) {
    out.set(c, off);
    off += c.length;
  }
  return out;
}

/**
 * Round trips per second of `c` on one connection with `inflight` calls
 * outstanding, over `durationMs` (after a short warm-up). A socket that is
 * missing or a first call that fails gives {@link Unavailable} with the reason.
 */
export async function unaryRate(
  socketPath: string,
  namespace: string,
  c: UnaryCall,
  inflight: number,
  durationMs: number,
): Promise<number> {
  try {
    Deno.lstatSync(socketPath);
  } catch {
    throw new Unavailable(`no gRPC socket at ${socketPath}`);
  }
  const conn = new GrpcConnection(socketPath, namespace);
  try {
    try {
      await withTimeout(conn.call(c), 5000, `${c.path}: no answer in 5 s`);
    } catch (err) {
      throw new Unavailable((err as Error).message);
    }
    const warmUntil = performance.now() + Math.min(200, durationMs / 4);
    while (performance.now() < warmUntil) await conn.call(c);
    let done = 0;
    const start = performance.now();
    const until = start + durationMs;
    await Promise.all(Array.from({ length: inflight }, async () => {
      while (performance.now() < until) {
        await conn.call(c);
        done++;
      }
    }));
    return done / ((performance.now() - start) / 1000);
  } finally {
    await conn.close();
  }
}

function withTimeout<T>(p: Promise<T>, ms: number, msg: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  return Promise.race([
    p,
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new Error(msg)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}
