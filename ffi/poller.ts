/**
 * Waiting for file descriptors without blocking the event loop.
 *
 * Deno offers no way to await readiness of a raw fd, and a blocking read,
 * accept or waitid run as a `nonblocking` FFI call (on a worker thread) has
 * two flaws: its errno lives in the worker's thread-local storage, out of
 * reach from JS, and the call cannot be stopped. So ffi never performs the
 * real operation on a worker. One epoll instance watches every fd ffi waits
 * on; a single `nonblocking` epoll_wait call sleeps on a worker thread until
 * something is ready; then the real operation runs synchronously on the JS
 * thread, with O_NONBLOCK/WNOHANG/MSG_DONTWAIT, so errno is exact. When
 * epoll_wait itself fails on the worker, it is repeated synchronously with
 * a zero timeout to learn the real errno (EINTR, from a signal landing on
 * that thread, is the only expected one).
 *
 * Wake-ups may be spurious (an event can arrive for an fd number that was
 * closed and reused meanwhile): every caller retries its nonblocking call
 * and waits again on EAGAIN.
 *
 * One worker call serves all waiters, however many fds (containers) there
 * are. When the last waiter is gone, the loop stops and nothing stays
 * pending, so a process with nothing to wait for can exit and Deno's test
 * sanitizers see no leaked op.
 * @module
 */

import { EBADF, EEXIST, EINTR, EPERM, SyscallError } from "./errno.ts";
import { check, errno, libc } from "./libc.ts";

/** Readiness bits (epoll's values). */
export const READABLE = 0x001; // EPOLLIN
/** The fd accepts writes. */
export const WRITABLE = 0x004; // EPOLLOUT
const EPOLLERR = 0x008;
const EPOLLHUP = 0x010;
const EPOLLONESHOT = 1 << 30;
const EPOLL_CTL_ADD = 1;
const EPOLL_CTL_DEL = 2;
const EPOLL_CTL_MOD = 3;
const O_CLOEXEC = 0o2000000;
const O_NONBLOCK = 0o4000;

// struct epoll_event is packed on x86_64 (12 bytes), naturally aligned
// elsewhere (16 bytes): u32 events, then u64 data at offset 4 or 8.
const EVENT_SIZE = Deno.build.arch === "x86_64" ? 12 : 16;
const DATA_OFFSET = Deno.build.arch === "x86_64" ? 4 : 8;
const MAX_EVENTS = 64;

/** Options shared by every call that may wait. */
export interface WaitOptions {
  /** Stops the wait; the call then rejects with the signal's reason. */
  signal?: AbortSignal;
}

interface Waiter {
  fd: number;
  events: number;
  call: string;
  resolve: (revents: number) => void;
  reject: (err: unknown) => void;
  signal?: AbortSignal;
  onAbort?: () => void;
}

let epfd = -1;
let wakeFd = -1;
// Set up on first use, like libc itself: importing ffi allocates nothing.
let events: Uint8Array<ArrayBuffer>;
let eventView: DataView;
let ctlEvent: Uint8Array<ArrayBuffer>;
let ctlView: DataView;
const waiters = new Map<number, Set<Waiter>>();
let looping = false;
// Rejections held back until the worker call has returned, so that a caller
// who aborted its last wait finds no FFI call of its still pending.
let deferred: (() => void)[] = [];

function setup(): void {
  if (epfd >= 0) return;
  const lib = libc();
  events = new Uint8Array(new ArrayBuffer(EVENT_SIZE * MAX_EVENTS));
  eventView = new DataView(events.buffer);
  ctlEvent = new Uint8Array(new ArrayBuffer(16));
  ctlView = new DataView(ctlEvent.buffer);
  const ep = check(lib.epoll_create1(O_CLOEXEC), "epoll_create1");
  const wake = lib.eventfd(0, O_CLOEXEC | O_NONBLOCK);
  if (wake === -1) {
    const err = new SyscallError("eventfd", errno());
    lib.close(ep);
    throw err;
  }
  epfd = ep;
  wakeFd = wake;
  const err = ctl(EPOLL_CTL_ADD, wakeFd, READABLE);
  if (err !== 0) throw new SyscallError("epoll_ctl", err, `eventfd ${wakeFd}`);
}

function ctl(op: number, fd: number, mask: number): number {
  ctlView.setUint32(0, mask, true);
  ctlView.setBigUint64(DATA_OFFSET, BigInt(fd), true);
  return libc().epoll_ctl(epfd, op, fd, ctlEvent) === -1 ? errno() : 0;
}

function maskOf(set: Set<Waiter>): number {
  let mask = 0;
  for (const w of set) mask |= w.events;
  return mask | EPOLLONESHOT;
}

/** Re-arms `fd` for its remaining waiters, or forgets it when none remain. */
function rearm(fd: number, set: Set<Waiter>): void {
  if (set.size === 0) {
    waiters.delete(fd);
    ctl(EPOLL_CTL_DEL, fd, 0); // may fail if fd was closed meanwhile: no matter
    return;
  }
  const err = ctl(EPOLL_CTL_MOD, fd, maskOf(set));
  if (err !== 0) failFd(fd, set, () => new SyscallError("epoll_ctl", err, `fd ${fd}`));
}

/** Drops `fd` and rejects each of its waiters with `error(waiter)`. */
function failFd(fd: number, set: Set<Waiter>, error: (w: Waiter) => unknown): void {
  waiters.delete(fd);
  ctl(EPOLL_CTL_DEL, fd, 0);
  for (const w of set) settle(w, () => w.reject(error(w)));
}

function detach(w: Waiter): void {
  if (w.onAbort) w.signal!.removeEventListener("abort", w.onAbort);
}

/** Settles `w` now, or after the worker call returns if it is the last one. */
function settle(w: Waiter, fn: () => void): void {
  detach(w);
  if (looping && waiters.size === 0) {
    deferred.push(fn);
    wake();
  } else {
    fn();
  }
}

function wake(): void {
  const one = new BigUint64Array([1n]);
  libc().write(wakeFd, one, 8n);
}

/**
 * Resolves with the ready bits once `fd` is ready for `interest`
 * ({@link READABLE} and/or {@link WRITABLE}); errors and hang-ups count as
 * ready, so that the caller's next call reports them. `call` names the
 * operation in errors. Regular files are always ready (epoll refuses them).
 */
export function waitFd(
  fd: number,
  interest: number,
  call: string,
  opts: WaitOptions = {},
): Promise<number> {
  opts.signal?.throwIfAborted();
  setup();
  return new Promise<number>((resolve, reject) => {
    const w: Waiter = { fd, events: interest, call, resolve, reject, signal: opts.signal };
    let set = waiters.get(fd);
    if (set) {
      set.add(w);
      const err = ctl(EPOLL_CTL_MOD, fd, maskOf(set));
      if (err !== 0) {
        set.delete(w);
        rearm(fd, set);
        reject(new SyscallError(call, err, `fd ${fd}`));
        return;
      }
    } else {
      set = new Set([w]);
      let err = ctl(EPOLL_CTL_ADD, fd, maskOf(set));
      // EEXIST: an old registration of this very file survived its close
      // (epoll keys on the open file, which a dup kept alive); take it over.
      if (err === EEXIST) err = ctl(EPOLL_CTL_MOD, fd, maskOf(set));
      if (err === EPERM) return resolve(interest); // a regular file: never blocks
      if (err !== 0) return reject(new SyscallError(call, err, `fd ${fd}`));
      waiters.set(fd, set);
    }
    if (opts.signal) {
      const signal = opts.signal;
      w.onAbort = () => {
        const s = waiters.get(fd);
        if (!s?.delete(w)) return;
        rearm(fd, s);
        settle(w, () => reject(signal.reason));
      };
      signal.addEventListener("abort", w.onAbort, { once: true });
    }
    if (!looping) void loop();
  });
}

/**
 * Fails every wait on `fd` with EBADF. Called by `close` before the fd
 * goes: epoll forgets a closed fd silently, which would leave its waiters
 * hanging for ever.
 */
export function forgetFd(fd: number): void {
  const set = waiters.get(fd);
  if (set) failFd(fd, set, (w) => new SyscallError(w.call, EBADF, `fd ${fd} closed while waiting`));
}

async function loop(): Promise<void> {
  const lib = libc();
  looping = true;
  try {
    while (waiters.size > 0) {
      let n = await lib.epoll_wait_blocking(epfd, events, MAX_EVENTS, -1);
      if (n === -1) {
        // The worker's errno is out of reach: ask again here, without waiting.
        n = lib.epoll_wait(epfd, events, MAX_EVENTS, 0);
        if (n === -1) {
          const e = errno();
          if (e === EINTR) continue;
          const err = new SyscallError("epoll_wait", e);
          for (const [fd, set] of [...waiters]) failFd(fd, set, () => err);
        }
      }
      dispatch(n);
      flushDeferred();
    }
  } catch (err) {
    for (const [fd, set] of [...waiters]) failFd(fd, set, () => err);
  } finally {
    looping = false;
    flushDeferred();
  }
}

function flushDeferred(): void {
  const fns = deferred;
  deferred = [];
  for (const fn of fns) fn();
}

function dispatch(n: number): void {
  for (let i = 0; i < n; i++) {
    const revents = eventView.getUint32(i * EVENT_SIZE, true);
    const fd = Number(eventView.getBigUint64(i * EVENT_SIZE + DATA_OFFSET, true));
    if (fd === wakeFd) {
      libc().read(wakeFd, new BigUint64Array(1), 8n);
      continue;
    }
    const set = waiters.get(fd);
    if (!set) continue;
    const ready: Waiter[] = [];
    for (const w of set) {
      if (revents & (w.events | EPOLLERR | EPOLLHUP)) ready.push(w);
    }
    for (const w of ready) set.delete(w);
    rearm(fd, set);
    for (const w of ready) {
      detach(w);
      w.resolve(revents);
    }
  }
}
