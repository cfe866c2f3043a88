/**
 * Command-line flag parsing for every mode: Node's `util.parseArgs`, taken
 * from its reference implementation on npm (@pkgjs/parseargs, the code Node's
 * own was made from) rather than from `node:util`. Loading `node:util` starts
 * Deno's Node compatibility layer, milliseconds of every client start (see
 * README's dependency table); the npm package is plain JavaScript that the
 * bundle inlines.
 * @module
 */

import * as reference from "@pkgjs/parseargs";

/** `util.parseArgs`: same options, same results, same error messages. */
export const parseArgs = reference.parseArgs as unknown as typeof import("node:util").parseArgs;
