/**
 * A plugin's result, whatever version of the specification it speaks
 * (0.1.0/0.2.0 `ip4`/`ip6`, 0.3.0 onwards `interfaces`/`ips`), reduced to
 * what a runtime needs: the addresses, their gateways and the interfaces.
 *
 * @module
 */

import { isObject } from "./config.ts";

/** One address a network gave, in CIDR form (e.g. "10.88.0.5/16"). */
export interface IpConfig {
  address: string;
  gateway?: string;
  version: 4 | 6;
  /** The name of the interface it is on, when the result says. */
  interface?: string;
}

/** One interface a network made; `sandbox` is the netns path for the pod's side. */
export interface InterfaceInfo {
  name: string;
  mac?: string;
  sandbox?: string;
}

/** What {@link summarize} reads from a result. */
export interface ResultSummary {
  ips: IpConfig[];
  interfaces: InterfaceInfo[];
}

function ipVersion(address: string): 4 | 6 {
  return address.includes(":") ? 6 : 4;
}

function str(v: unknown): string | undefined {
  return typeof v === "string" && v !== "" ? v : undefined;
}

/** Reads the addresses and interfaces of a result of any CNI version. */
export function summarize(result: unknown): ResultSummary {
  if (!isObject(result)) return { ips: [], interfaces: [] };
  const interfaces: InterfaceInfo[] = [];
  if (Array.isArray(result.interfaces)) {
    for (const i of result.interfaces) {
      if (!isObject(i) || !str(i.name)) continue;
      interfaces.push({ name: i.name as string, mac: str(i.mac), sandbox: str(i.sandbox) });
    }
  }
  const ips: IpConfig[] = [];
  if (Array.isArray(result.ips)) {
    for (const ip of result.ips) {
      const address = isObject(ip) ? str(ip.address) : undefined;
      if (!address || !isObject(ip)) continue;
      const entry: IpConfig = { address, version: ipVersion(address) };
      const gateway = str(ip.gateway);
      if (gateway) entry.gateway = gateway;
      if (typeof ip.interface === "number" && interfaces[ip.interface]) {
        entry.interface = interfaces[ip.interface].name;
      }
      ips.push(entry);
    }
  } else {
    // Before 0.3.0: one `ip4` and one `ip6` object, each with `ip` and `gateway`.
    for (const key of ["ip4", "ip6"]) {
      const v = result[key];
      const address = isObject(v) ? str(v.ip) : undefined;
      if (!address || !isObject(v)) continue;
      const entry: IpConfig = { address, version: key === "ip6" ? 6 : 4 };
      const gateway = str(v.gateway);
      if (gateway) entry.gateway = gateway;
      ips.push(entry);
    }
  }
  return { ips, interfaces };
}
