/**
 * berth's version, from deno.json, so there is one place to bump it.
 * @module
 */
import config from "../deno.json" with { type: "json" };

/** The version string printed by `berth --version`. */
export const VERSION: string = config.version;
