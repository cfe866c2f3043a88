/**
 * The one table of Linux errno numbers for berth, and the error type every
 * ffi wrapper throws. Numbers are the generic Linux ones (x86_64, arm64).
 *
 * @example
 * ```ts
 * import { SyscallError } from "./errno.ts";
 * try { throw new SyscallError("pidfd_open", 3, "1234"); } catch (e) {
 *   // e.message === "pidfd_open(1234): ESRCH (No such process)"
 * }
 * ```
 * @module
 */

// Errno values that ffi's own code tests for (the table below names them all).

/** Operation not permitted. */
export const EPERM = 1;
/** No such file or directory. */
export const ENOENT = 2;
/** No such process. */
export const ESRCH = 3;
/** Interrupted system call. */
export const EINTR = 4;
/** Input/output error (a pty master reads it once every slave is closed). */
export const EIO = 5;
/** Bad file descriptor. */
export const EBADF = 9;
/** No child processes. */
export const ECHILD = 10;
/** Resource temporarily unavailable (EWOULDBLOCK). */
export const EAGAIN = 11;
/** File exists. */
export const EEXIST = 17;
/** Invalid argument. */
export const EINVAL = 22;
/** Broken pipe. */
export const EPIPE = 32;
/** Result too large (a buffer was too small for an xattr value or list). */
export const ERANGE = 34;
/** File name too long. */
export const ENAMETOOLONG = 36;
/** No data available (getxattr: no attribute of that name). */
export const ENODATA = 61;
/** Message too long (also: ancillary data did not fit). */
export const EMSGSIZE = 90;
/** A pending connection was aborted before accept took it. */
export const ECONNABORTED = 103;

// Index n-1 holds "NAME description" for errno n, as glibc's strerror says it.
const TABLE: readonly (string | undefined)[] = [
  "EPERM Operation not permitted",
  "ENOENT No such file or directory",
  "ESRCH No such process",
  "EINTR Interrupted system call",
  "EIO Input/output error",
  "ENXIO No such device or address",
  "E2BIG Argument list too long",
  "ENOEXEC Exec format error",
  "EBADF Bad file descriptor",
  "ECHILD No child processes",
  "EAGAIN Resource temporarily unavailable",
  "ENOMEM Cannot allocate memory",
  "EACCES Permission denied",
  "EFAULT Bad address",
  "ENOTBLK Block device required",
  "EBUSY Device or resource busy",
  "EEXIST File exists",
  "EXDEV Invalid cross-device link",
  "ENODEV No such device",
  "ENOTDIR Not a directory",
  "EISDIR Is a directory",
  "EINVAL Invalid argument",
  "ENFILE Too many open files in system",
  "EMFILE Too many open files",
  "ENOTTY Inappropriate ioctl for device",
  "ETXTBSY Text file busy",
  "EFBIG File too large",
  "ENOSPC No space left on device",
  "ESPIPE Illegal seek",
  "EROFS Read-only file system",
  "EMLINK Too many links",
  "EPIPE Broken pipe",
  "EDOM Numerical argument out of domain",
  "ERANGE Numerical result out of range",
  "EDEADLK Resource deadlock avoided",
  "ENAMETOOLONG File name too long",
  "ENOLCK No locks available",
  "ENOSYS Function not implemented",
  "ENOTEMPTY Directory not empty",
  "ELOOP Too many levels of symbolic links",
  undefined, // 41: unused
  "ENOMSG No message of desired type",
  "EIDRM Identifier removed",
  "ECHRNG Channel number out of range",
  "EL2NSYNC Level 2 not synchronized",
  "EL3HLT Level 3 halted",
  "EL3RST Level 3 reset",
  "ELNRNG Link number out of range",
  "EUNATCH Protocol driver not attached",
  "ENOCSI No CSI structure available",
  "EL2HLT Level 2 halted",
  "EBADE Invalid exchange",
  "EBADR Invalid request descriptor",
  "EXFULL Exchange full",
  "ENOANO No anode",
  "EBADRQC Invalid request code",
  "EBADSLT Invalid slot",
  undefined, // 58: unused
  "EBFONT Bad font file format",
  "ENOSTR Device not a stream",
  "ENODATA No data available",
  "ETIME Timer expired",
  "ENOSR Out of streams resources",
  "ENONET Machine is not on the network",
  "ENOPKG Package not installed",
  "EREMOTE Object is remote",
  "ENOLINK Link has been severed",
  "EADV Advertise error",
  "ESRMNT Srmount error",
  "ECOMM Communication error on send",
  "EPROTO Protocol error",
  "EMULTIHOP Multihop attempted",
  "EDOTDOT RFS specific error",
  "EBADMSG Bad message",
  "EOVERFLOW Value too large for defined data type",
  "ENOTUNIQ Name not unique on network",
  "EBADFD File descriptor in bad state",
  "EREMCHG Remote address changed",
  "ELIBACC Can not access a needed shared library",
  "ELIBBAD Accessing a corrupted shared library",
  "ELIBSCN .lib section in a.out corrupted",
  "ELIBMAX Attempting to link in too many shared libraries",
  "ELIBEXEC Cannot exec a shared library directly",
  "EILSEQ Invalid or incomplete multibyte or wide character",
  "ERESTART Interrupted system call should be restarted",
  "ESTRPIPE Streams pipe error",
  "EUSERS Too many users",
  "ENOTSOCK Socket operation on non-socket",
  "EDESTADDRREQ Destination address required",
  "EMSGSIZE Message too long",
  "EPROTOTYPE Protocol wrong type for socket",
  "ENOPROTOOPT Protocol not available",
  "EPROTONOSUPPORT Protocol not supported",
  "ESOCKTNOSUPPORT Socket type not supported",
  "EOPNOTSUPP Operation not supported",
  "EPFNOSUPPORT Protocol family not supported",
  "EAFNOSUPPORT Address family not supported by protocol",
  "EADDRINUSE Address already in use",
  "EADDRNOTAVAIL Cannot assign requested address",
  "ENETDOWN Network is down",
  "ENETUNREACH Network is unreachable",
  "ENETRESET Network dropped connection on reset",
  "ECONNABORTED Software caused connection abort",
  "ECONNRESET Connection reset by peer",
  "ENOBUFS No buffer space available",
  "EISCONN Transport endpoint is already connected",
  "ENOTCONN Transport endpoint is not connected",
  "ESHUTDOWN Cannot send after transport endpoint shutdown",
  "ETOOMANYREFS Too many references: cannot splice",
  "ETIMEDOUT Connection timed out",
  "ECONNREFUSED Connection refused",
  "EHOSTDOWN Host is down",
  "EHOSTUNREACH No route to host",
  "EALREADY Operation already in progress",
  "EINPROGRESS Operation now in progress",
  "ESTALE Stale file handle",
  "EUCLEAN Structure needs cleaning",
  "ENOTNAM Not a XENIX named type file",
  "ENAVAIL No XENIX semaphores available",
  "EISNAM Is a named type file",
  "EREMOTEIO Remote I/O error",
  "EDQUOT Disk quota exceeded",
  "ENOMEDIUM No medium found",
  "EMEDIUMTYPE Wrong medium type",
  "ECANCELED Operation canceled",
  "ENOKEY Required key not available",
  "EKEYEXPIRED Key has expired",
  "EKEYREVOKED Key has been revoked",
  "EKEYREJECTED Key was rejected by service",
  "EOWNERDEAD Owner died",
  "ENOTRECOVERABLE State not recoverable",
  "ERFKILL Operation not possible due to RF-kill",
  "EHWPOISON Memory page has hardware error",
];

/** The symbolic name of an errno number, e.g. 3 -> "ESRCH"; "E<n>" if unknown. */
export function errnoName(errno: number): string {
  const row = TABLE[errno - 1];
  return row ? row.slice(0, row.indexOf(" ")) : `E${errno}`;
}

/** The description of an errno number, e.g. 3 -> "No such process". */
export function errnoDescription(errno: number): string {
  const row = TABLE[errno - 1];
  return row ? row.slice(row.indexOf(" ") + 1) : `Unknown error ${errno}`;
}

/**
 * A failed system call: which call, its errno and that errno's name.
 * `errno` is read by errdefs' `toBerthError` to choose a gRPC code, so the
 * field keeps that name and stays a plain number.
 */
export class SyscallError extends Error {
  /** The libc function that failed, e.g. "pidfd_open". */
  readonly call: string;
  /** The errno it left, e.g. 3. */
  readonly errno: number;
  /** The errno's name, e.g. "ESRCH". */
  readonly code: string;

  /**
   * `detail` names the arguments that matter to a reader (a pid, a path)
   * and goes between the parentheses of the message.
   */
  constructor(call: string, errno: number, detail = "") {
    const code = errnoName(errno);
    super(`${call}(${detail}): ${code} (${errnoDescription(errno)})`);
    this.name = "SyscallError";
    this.call = call;
    this.errno = errno;
    this.code = code;
  }
}

/**
 * True when `err` is a {@link SyscallError} whose errno is named `code`,
 * e.g. `isErrno(err, "EIO")` at the end of a pty.
 */
export function isErrno(err: unknown, code: string): boolean {
  return err instanceof SyscallError && err.code === code;
}
