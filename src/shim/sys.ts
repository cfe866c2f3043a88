/**
 * The system calls the shim uses, in one place. They come from ffi/ (the
 * only place with FFI signatures); this file picks them so the shim's other
 * files do not depend on how ffi/ is split.
 * @module
 */
export {
  acceptNonblocking,
  type ChildExit,
  closeFd,
  mkfifo,
  mount,
  pidfdOpen,
  pidfdSendSignal,
  readFd,
  recvFds,
  setChildSubreaper,
  setWinsize,
  umount2,
  unixListen,
  waitPidfd,
  waitPidfdNoHang,
  waitPidNoHang,
  writeFdAll,
} from "../../ffi/shim_interim.ts";
