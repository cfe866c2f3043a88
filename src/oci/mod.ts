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
  type ImageProcessConfig,
  mergeEnv,
  type Mount,
  OCI_VERSION,
  parseMountFlag,
  parseUser,
  type Spec,
  type SpecOptions,
  SPEC_TYPE_URL,
  withImageConfig,
} from "./spec.ts";
