import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import { ContainerConfigSchema, PodSandboxConfigSchema } from "../gen/k8s/cri/runtime/v1/api_pb.ts";
import { DEFAULT_CAPS } from "../oci/mod.ts";
import { containerSpec, sandboxSpec } from "./spec.ts";
import {
  BASE_ALLOWED,
  BY_CAPABILITY,
  CLONE_NAMESPACE_FLAGS,
  defaultSeccomp,
  type SeccompProfile,
} from "./seccomp_default.ts";

/** Names the profile allows with no condition on the arguments. */
function unconditional(p: SeccompProfile): Set<string> {
  return new Set(
    p.syscalls.filter((r) => r.action === "SCMP_ACT_ALLOW" && !r.args).flatMap((r) => r.names),
  );
}

Deno.test("default seccomp: EPERM by default, the base list, the personality values", () => {
  assert.equal(BASE_ALLOWED.length, 349, "containerd 1.6's base allow list");
  assert.equal(new Set(BASE_ALLOWED).size, BASE_ALLOWED.length, "no name twice");
  const p = defaultSeccomp(DEFAULT_CAPS, "x86_64", "6.1.0");
  assert.equal(p.defaultAction, "SCMP_ACT_ERRNO");
  assert.equal("defaultErrnoRet" in p, false, "runc's default errno: EPERM");
  assert.deepEqual(p.architectures, ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]);
  const allowed = unconditional(p);
  for (const n of ["read", "write", "execve", "openat", "arch_prctl", "ptrace", "chroot"]) {
    assert.ok(allowed.has(n), n);
  }
  for (const n of ["keyctl", "add_key", "userfaultfd", "kexec_load", "unshare", "mount", "setns"]) {
    assert.ok(!allowed.has(n), `${n} blocked`);
  }
  const personas = p.syscalls.filter((r) => r.names.includes("personality"));
  assert.deepEqual(
    personas.map((r) => r.args),
    [0, 8, 0x20000, 0x20008, 0xffffffff].map((value) => [{ index: 0, value, op: "SCMP_CMP_EQ" }]),
  );
});

Deno.test("default seccomp: without CAP_SYS_ADMIN clone may not make namespaces, clone3 is ENOSYS", () => {
  const p = defaultSeccomp(DEFAULT_CAPS, "x86_64", "6.1.0");
  assert.equal(unconditional(p).has("clone"), false);
  const clone = p.syscalls.filter((r) => r.names.includes("clone"));
  assert.deepEqual(clone, [{
    names: ["clone"],
    action: "SCMP_ACT_ALLOW",
    args: [{ index: 0, value: CLONE_NAMESPACE_FLAGS, valueTwo: 0, op: "SCMP_CMP_MASKED_EQ" }],
  }]);
  assert.equal(CLONE_NAMESPACE_FLAGS, 0x7e020000);
  assert.deepEqual(p.syscalls.filter((r) => r.names.includes("clone3")), [
    { names: ["clone3"], action: "SCMP_ACT_ERRNO", errnoRet: 38 },
  ]);

  const admin = defaultSeccomp([...DEFAULT_CAPS, "CAP_SYS_ADMIN"], "x86_64", "6.1.0");
  const allowed = unconditional(admin);
  for (const n of BY_CAPABILITY.CAP_SYS_ADMIN) assert.ok(allowed.has(n), n);
  assert.ok(!admin.syscalls.some((r) => r.args && r.names.includes("clone")), "clone unfiltered");
  assert.ok(!admin.syscalls.some((r) => r.action === "SCMP_ACT_ERRNO"), "clone3 allowed");
});

Deno.test("default seccomp: capability-guarded syscalls, kernel and arch", () => {
  const base = unconditional(defaultSeccomp(DEFAULT_CAPS, "x86_64", "6.1.0"));
  for (const [cap, names] of Object.entries(BY_CAPABILITY)) {
    if (cap === "CAP_SYS_CHROOT") continue; // in the default set
    const withCap = unconditional(defaultSeccomp([...DEFAULT_CAPS, cap], "x86_64", "6.1.0"));
    for (const n of names) assert.ok(withCap.has(n), `${cap} allows ${n}`);
    assert.ok(names.some((n) => !base.has(n)), `${cap} adds something`);
  }
  assert.ok(!base.has("process_vm_readv") && !base.has("reboot") && !base.has("syslog"));
  assert.ok(!unconditional(defaultSeccomp(DEFAULT_CAPS, "x86_64", "4.4.0")).has("ptrace"));
  assert.ok(unconditional(defaultSeccomp(DEFAULT_CAPS, "x86_64", "4.8.0-1")).has("ptrace"));
  const arm = defaultSeccomp(DEFAULT_CAPS, "aarch64", "6.1.0");
  assert.deepEqual(arm.architectures, ["SCMP_ARCH_ARM", "SCMP_ARCH_AARCH64"]);
  assert.ok(unconditional(arm).has("set_tls") && !unconditional(arm).has("arch_prctl"));
  assert.deepEqual(defaultSeccomp(DEFAULT_CAPS, "riscv64", "6.1.0").architectures, []);
});

Deno.test("default seccomp: specs build it from the capabilities the security context settled", () => {
  const pod = create(PodSandboxConfigSchema, { metadata: { name: "p", namespace: "n", uid: "u" } });
  const spec = (caps: string[]) =>
    containerSpec({
      id: "c",
      sandboxId: "sb",
      config: create(ContainerConfigSchema, {
        metadata: { name: "c" },
        linux: { securityContext: { capabilities: { addCapabilities: caps } } },
      }),
      sandboxConfig: pod,
      image: { Cmd: ["sh"] },
      imageName: "busybox",
      sandboxPid: 42,
      hostsPath: "/p/hosts",
      resolvPath: "/p/resolv.conf",
      hostnamePath: "/p/hostname",
      shmPath: "/run/shm",
      devices: [],
      user: { uid: 0, gid: 0, additionalGids: [] },
      seccomp: "default",
    }) as { linux: { seccomp?: SeccompProfile } };
  assert.ok(!unconditional(spec([]).linux.seccomp!).has("unshare"));
  assert.ok(unconditional(spec(["SYS_ADMIN"]).linux.seccomp!).has("unshare"));
  const sb = sandboxSpec({
    id: "sb",
    config: pod,
    image: { Cmd: ["/pause"] },
    netnsPath: "/run/netns/x",
    shmPath: "/run/shm",
    seccomp: "default",
  }) as { linux: { seccomp?: SeccompProfile } };
  assert.equal(sb.linux.seccomp?.defaultAction, "SCMP_ACT_ERRNO");
});
