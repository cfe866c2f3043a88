/**
 * OCI runtime spec generation (containerd's Linux defaults, image config,
 * ctr's run options).
 * @module
 */
export {
  ALL_CAPS,
  applyOptions,
  capsFromMask,
  DEFAULT_CAPS,
  DEFAULT_PATH,
  defaultSpec,
  encodeSpec,
  type Hook,
  HOOK_STAGES,
  type Hooks,
  type HookStage,
  type ImageProcessConfig,
  mergeEnv,
  type Mount,
  OCI_VERSION,
  parseHookFlag,
  parseMountFlag,
  parseUser,
  type Spec,
  SPEC_TYPE_URL,
  type SpecOptions,
  withImageConfig,
} from "./spec.ts";
