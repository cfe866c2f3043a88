/**
 * Typed wrappers over libc for what Deno does not offer: subreaping and
 * pidfds, terminals, fd passing over unix sockets, peer credentials, raw fd
 * IO, mounts, fifos, device nodes and extended attributes. Nothing here
 * knows about containers.
 *
 * libc is opened on the first call, not on import (needs --allow-ffi then).
 * Every failure is a {@link SyscallError} naming the call and its errno.
 * Calls that may wait return Promises and never block the event loop.
 *
 * @example
 * ```ts
 * import { pidfdOpen, pidfdSendSignal, setChildSubreaper, waitPidfd, close } from "./ffi/mod.ts";
 * setChildSubreaper(true);
 * const fd = pidfdOpen(pid);
 * pidfdSendSignal(fd, "SIGTERM");
 * const exit = await waitPidfd(fd, { nonblocking: true });
 * close(fd);
 * ```
 * @module
 */

export { errnoDescription, errnoName, isErrno, SyscallError } from "./errno.ts";
export type { WaitOptions } from "./poller.ts";
export { signalName, signalNumber } from "./signal.ts";
export {
  getChildSubreaper,
  getPdeathsig,
  getProcessName,
  Namespace,
  releaseFreeMemory,
  setChildSubreaper,
  setns,
  setPdeathsig,
  setProcessName,
  setsid,
} from "./process.ts";
export { pidfdOpen, pidfdSendSignal, waitPid, waitPidfd } from "./pidfd.ts";
export type { ExitCode, ExitInfo, WaitPidfdAsyncOptions, WaitPidOptions } from "./pidfd.ts";
export { close, isNonblocking, pipe, readFd, setNonblocking, writeFd } from "./fd.ts";
export {
  getWinsize,
  makeRaw,
  openPty,
  ptsName,
  restoreTermios,
  setWinsize,
  tcgetattr,
  tcsetattr,
} from "./terminal.ts";
export type { Pty, Termios, Winsize } from "./terminal.ts";
export {
  accept,
  connectUnix,
  getPeerCred,
  listenUnix,
  recvFds,
  sendFds,
  socketpair,
} from "./socket.ts";
export type { PeerCred, Received } from "./socket.ts";
export { Mount, mount, umount2, Unmount } from "./mount.ts";
export { devMajor, devMinor, makedev, mkfifo, mknod, NodeType, openFifo } from "./fs.ts";
export { lgetxattr, llistxattr, lremovexattr, lsetxattr, XattrFlags } from "./xattr.ts";
