// OS calls the engine needs that neither Node nor mmap-io offers:
//  - flock(2): one writer per table across processes (advisory, released by the kernel when the
//    process dies, so a SIGKILLed writer never leaves a stale lock behind);
//  - posix_fallocate(3): reserve disk blocks before a range is mapped, so a full disk surfaces as
//    ENOSPC on the write path instead of SIGBUS when a sparse page is first touched;
//  - open-file-description byte locks (F_OFD_SETLK / F_OFD_GETLK): a process claims its record of
//    the reader table by locking one byte of it; the kernel drops the lock when the process dies
//    (LMDB's reader table does the same with fcntl locks), which is how dead readers are found;
//  - one sendmsg(2) of a response's three parts straight onto a connection's socket, when Node has
//    nothing queued for it (src/http/lane/connection.ts), skipping Node's stream bookkeeping
//    around the same single writev;
//  - sequentially consistent atomics on mapped memory shared between processes (the reader
//    table's pin counts and recycle marks, the key map's record generations and buckets). JavaScript's Atomics are specified for
//    SharedArrayBuffers only; a mapping is an external, non-shared ArrayBuffer, so the ordering
//    between processes is made explicit here with C11 atomics and full fences.
// Errors are thrown with `code` set to the errno name, like Node's own fs errors.
#include <errno.h>
#include <fcntl.h>
#include <node_api.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <stdatomic.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/uio.h>

static const char *errno_name(int err) {
  switch (err) {
    case ENOSPC: return "ENOSPC";
    case EBADF: return "EBADF";
    case EINVAL: return "EINVAL";
    case EFBIG: return "EFBIG";
    case EINTR: return "EINTR";
    case EIO: return "EIO";
    case ENODEV: return "ENODEV";
    case ESPIPE: return "ESPIPE";
    case EOPNOTSUPP: return "EOPNOTSUPP";
    case ENOLCK: return "ENOLCK";
    case EDQUOT: return "EDQUOT";
    default: return "EUNKNOWN";
  }
}

static napi_value throw_errno(napi_env env, const char *call, int err) {
  char msg[160];
  snprintf(msg, sizeof msg, "%s failed: %s (%s)", call, strerror(err), errno_name(err));
  napi_throw_error(env, errno_name(err), msg);
  return NULL;
}

static int get_args(napi_env env, napi_callback_info info, size_t want, napi_value *argv) {
  size_t argc = want;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < want) {
    napi_throw_type_error(env, "EINVAL", "pixtable_native: missing arguments");
    return 0;
  }
  return 1;
}

// tryLock(fd, exclusive) -> true when the lock was taken, false when another holder has it.
static napi_value try_lock(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!get_args(env, info, 2, argv)) return NULL;
  int32_t fd;
  bool exclusive;
  if (napi_get_value_int32(env, argv[0], &fd) != napi_ok ||
      napi_get_value_bool(env, argv[1], &exclusive) != napi_ok) {
    napi_throw_type_error(env, "EINVAL", "tryLock(fd: number, exclusive: boolean)");
    return NULL;
  }
  int rc;
  do {
    rc = flock(fd, (exclusive ? LOCK_EX : LOCK_SH) | LOCK_NB);
  } while (rc != 0 && errno == EINTR);
  napi_value result;
  if (rc == 0) {
    napi_get_boolean(env, true, &result);
    return result;
  }
  if (errno == EWOULDBLOCK) {
    napi_get_boolean(env, false, &result);
    return result;
  }
  return throw_errno(env, "flock", errno);
}

static napi_value unlock(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!get_args(env, info, 1, argv)) return NULL;
  int32_t fd;
  if (napi_get_value_int32(env, argv[0], &fd) != napi_ok) {
    napi_throw_type_error(env, "EINVAL", "unlock(fd: number)");
    return NULL;
  }
  if (flock(fd, LOCK_UN) != 0) return throw_errno(env, "flock(LOCK_UN)", errno);
  return NULL;
}

// preallocate(fd, offset, length): blocks for [offset, offset+length) are reserved and the file
// grows to at least offset+length. Never shrinks a file.
static napi_value preallocate(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  if (!get_args(env, info, 3, argv)) return NULL;
  int32_t fd;
  int64_t offset, length;
  if (napi_get_value_int32(env, argv[0], &fd) != napi_ok ||
      napi_get_value_int64(env, argv[1], &offset) != napi_ok ||
      napi_get_value_int64(env, argv[2], &length) != napi_ok || offset < 0 || length <= 0) {
    napi_throw_type_error(env, "EINVAL", "preallocate(fd: number, offset: number >= 0, length: number > 0)");
    return NULL;
  }
  int err;
  do {
    err = posix_fallocate(fd, (off_t)offset, (off_t)length);
  } while (err == EINTR);
  if (err != 0) return throw_errno(env, "posix_fallocate", err);
  return NULL;
}

// The fd and a one-byte write-lock request at offset, from (fd, offset) arguments; 0 (and a thrown
// error) when they are not that.
static int byte_lock_args(napi_env env, napi_callback_info info, const char *sig, int32_t *fd, struct flock *fl) {
  napi_value argv[2];
  if (!get_args(env, info, 2, argv)) return 0;
  int64_t offset;
  if (napi_get_value_int32(env, argv[0], fd) != napi_ok ||
      napi_get_value_int64(env, argv[1], &offset) != napi_ok || offset < 0) {
    napi_throw_type_error(env, "EINVAL", sig);
    return 0;
  }
  memset(fl, 0, sizeof *fl);
  fl->l_type = F_WRLCK;
  fl->l_whence = SEEK_SET;
  fl->l_start = (off_t)offset;
  fl->l_len = 1;
  return 1;
}

// lockByte(fd, offset) -> true when this open file description now holds a write lock on the byte
// at offset, false when another one holds it. Locks of one description do not conflict with it.
static napi_value lock_byte(napi_env env, napi_callback_info info) {
  int32_t fd;
  struct flock fl;
  if (!byte_lock_args(env, info, "lockByte(fd: number, offset: number >= 0)", &fd, &fl)) return NULL;
  int rc;
  do {
    rc = fcntl(fd, F_OFD_SETLK, &fl);
  } while (rc != 0 && errno == EINTR);
  if (rc != 0 && errno != EAGAIN && errno != EACCES) return throw_errno(env, "fcntl(F_OFD_SETLK)", errno);
  napi_value result;
  napi_get_boolean(env, rc == 0, &result);
  return result;
}

// unlockByte(fd, offset): drops this open file description's lock on that byte. Closing the fd
// alone is not enough while the file is mapped: the mapping keeps the description, and its locks,
// alive until it is unmapped.
static napi_value unlock_byte(napi_env env, napi_callback_info info) {
  int32_t fd;
  struct flock fl;
  if (!byte_lock_args(env, info, "unlockByte(fd: number, offset: number >= 0)", &fd, &fl)) return NULL;
  fl.l_type = F_UNLCK;
  if (fcntl(fd, F_OFD_SETLK, &fl) != 0) return throw_errno(env, "fcntl(F_OFD_SETLK, F_UNLCK)", errno);
  return NULL;
}

// byteLocked(fd, offset) -> true when another open file description holds a lock on that byte.
static napi_value byte_locked(napi_env env, napi_callback_info info) {
  int32_t fd;
  struct flock fl;
  if (!byte_lock_args(env, info, "byteLocked(fd: number, offset: number >= 0)", &fd, &fl)) return NULL;
  if (fcntl(fd, F_OFD_GETLK, &fl) != 0) return throw_errno(env, "fcntl(F_OFD_GETLK)", errno);
  napi_value result;
  napi_get_boolean(env, fl.l_type != F_UNLCK, &result);
  return result;
}

// The u32 at byte `offset` of a Buffer, 4-byte aligned and inside it; NULL (and a thrown error)
// otherwise.
static _Atomic uint32_t *word_at(napi_env env, napi_value buf, napi_value off, const char *sig) {
  void *data;
  size_t len;
  int64_t offset;
  if (napi_get_buffer_info(env, buf, &data, &len) != napi_ok ||
      napi_get_value_int64(env, off, &offset) != napi_ok || offset < 0 || (offset & 3) != 0 ||
      (uint64_t)offset + 4 > len || ((uintptr_t)data & 3) != 0) {
    napi_throw_type_error(env, "EINVAL", sig);
    return NULL;
  }
  return (_Atomic uint32_t *)((char *)data + offset);
}

// atomicStore(buf, offset, value): sequentially consistent store, then a full fence.
static napi_value atomic_store_fn(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  if (!get_args(env, info, 3, argv)) return NULL;
  _Atomic uint32_t *w = word_at(env, argv[0], argv[1], "atomicStore(buf: Buffer, offset: number, value: number)");
  if (w == NULL) return NULL;
  uint32_t value;
  if (napi_get_value_uint32(env, argv[2], &value) != napi_ok) {
    napi_throw_type_error(env, "EINVAL", "atomicStore(buf: Buffer, offset: number, value: number)");
    return NULL;
  }
  atomic_store_explicit(w, value, memory_order_seq_cst);
  atomic_thread_fence(memory_order_seq_cst);
  return NULL;
}

// atomicLoad(buf, offset) -> the u32 at offset, loaded sequentially consistent after a full fence.
// The key map's readers bracket a record's key bytes with two of these (a seqlock on the
// record's generation), so neither the compiler nor the CPU moves their reads outside it.
static napi_value atomic_load_fn(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!get_args(env, info, 2, argv)) return NULL;
  _Atomic uint32_t *w = word_at(env, argv[0], argv[1], "atomicLoad(buf: Buffer, offset: number)");
  if (w == NULL) return NULL;
  atomic_thread_fence(memory_order_seq_cst);
  uint32_t value = atomic_load_explicit(w, memory_order_seq_cst);
  napi_value result;
  napi_create_uint32(env, value, &result);
  return result;
}

// keyFind(map, geometry, key, out) -> the slot whose live record in the key map (src/engine/
// key-map.ts) holds exactly `key`'s UTF-8 bytes, or -1; out[0] := that record's generation. One
// call for what would otherwise be a dozen: hash, linear probe, and for each candidate the
// seqlock read of its record (generation, then length, offset and bytes, then the generation
// again; a record rewritten in between is looked at again, a bounded number of times).
// geometry: u32 [capacity, mask, genAt, offAt, lenAt, bucketsAt, keysAt, keyBytes].
#define KEY_MAX 4096
static napi_value key_find(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  if (!get_args(env, info, 4, argv)) return NULL;
  void *data, *geo_data, *out_data;
  size_t len, geo_len, out_len;
  // (on the stack: worker threads may look up at the same time) A key cut short by the buffer
  // is still longer than KEY_MAX (N-API stops at most 3 bytes short of it), so never matched.
  char key[KEY_MAX + 8];
  size_t key_len;
  if (napi_get_buffer_info(env, argv[0], &data, &len) != napi_ok ||
      napi_get_buffer_info(env, argv[1], &geo_data, &geo_len) != napi_ok || geo_len < 32 ||
      napi_get_buffer_info(env, argv[3], &out_data, &out_len) != napi_ok || out_len < 4 ||
      ((uintptr_t)data & 3) != 0 || ((uintptr_t)geo_data & 3) != 0 || ((uintptr_t)out_data & 3) != 0 ||
      napi_get_value_string_utf8(env, argv[2], key, sizeof key, &key_len) != napi_ok) {
    napi_throw_type_error(env, "EINVAL", "keyFind(map: Buffer, geometry: Buffer, key: string, out: Buffer)");
    return NULL;
  }
  const uint32_t *g = (const uint32_t *)geo_data;
  uint32_t cap = g[0], mask = g[1];
  uint64_t gen_at = g[2], off_at = g[3], len_at = g[4], buckets_at = g[5], keys_at = g[6], key_bytes = g[7];
  int64_t found = -1;
  napi_value result;
  if (key_len > KEY_MAX || keys_at + key_bytes > len || buckets_at + ((uint64_t)mask + 1) * 4 > len ||
      len_at + (uint64_t)cap * 4 > len || gen_at + (uint64_t)cap * 4 > len || off_at + (uint64_t)cap * 4 > len) {
    napi_create_int64(env, -1, &result);
    return result;
  }
  char *m = (char *)data;
  uint32_t h = 0x811c9dc5u;
  for (size_t i = 0; i < key_len; i++) h = (h ^ (uint8_t)key[i]) * 0x01000193u;
  _Atomic uint32_t *buckets = (_Atomic uint32_t *)(m + buckets_at);
  _Atomic uint32_t *gens = (_Atomic uint32_t *)(m + gen_at);
  volatile const uint32_t *offs = (const uint32_t *)(m + off_at);
  volatile const uint32_t *lens = (const uint32_t *)(m + len_at);
  uint32_t i = h & mask;
  int again = 0;
  for (uint64_t n = 0; n <= mask; n++, i = (i + 1) & mask) {
    uint32_t v = atomic_load_explicit(&buckets[i], memory_order_seq_cst);
    if (v == 0) break;
    if (v == 0xffffffffu || v > cap) continue;
    uint32_t s = v - 1;
    uint32_t g1 = atomic_load_explicit(&gens[s], memory_order_seq_cst);
    if (g1 == 0) continue;
    uint32_t l = lens[s], off = offs[s];
    int same = l == key_len && (uint64_t)off + l <= key_bytes && memcmp(m + keys_at + off, key, l) == 0;
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load_explicit(&gens[s], memory_order_seq_cst) != g1) {
      if (++again < 8) {
        n--;
        i = (i - 1) & mask;
      }
      continue;
    }
    if (!same) continue;
    ((uint32_t *)out_data)[0] = g1;
    found = s;
    break;
  }
  napi_create_int64(env, found, &result);
  return result;
}

// firstNonZero(buf, offset, stride, count) -> the first i < count whose u32 at offset + i*stride
// is non-zero (sequentially consistent loads after a full fence), or -1. The writer's scan of one
// slot's pin count across every reader record, in one call.
static napi_value first_non_zero(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  if (!get_args(env, info, 4, argv)) return NULL;
  void *data;
  size_t len;
  int64_t offset, stride, count;
  if (napi_get_buffer_info(env, argv[0], &data, &len) != napi_ok ||
      napi_get_value_int64(env, argv[1], &offset) != napi_ok ||
      napi_get_value_int64(env, argv[2], &stride) != napi_ok ||
      napi_get_value_int64(env, argv[3], &count) != napi_ok || offset < 0 || (offset & 3) != 0 ||
      stride <= 0 || (stride & 3) != 0 || count < 0 || ((uintptr_t)data & 3) != 0 ||
      (count > 0 && (uint64_t)offset + (uint64_t)(count - 1) * (uint64_t)stride + 4 > len)) {
    napi_throw_type_error(env, "EINVAL", "firstNonZero(buf: Buffer, offset: number, stride: number, count: number)");
    return NULL;
  }
  atomic_thread_fence(memory_order_seq_cst);
  int64_t found = -1;
  for (int64_t i = 0; i < count; i++) {
    _Atomic uint32_t *w = (_Atomic uint32_t *)((char *)data + offset + i * stride);
    if (atomic_load_explicit(w, memory_order_seq_cst) != 0) {
      found = i;
      break;
    }
  }
  napi_value result;
  napi_create_int64(env, found, &result);
  return result;
}

// sendParts(fd, a, b, c) -> the bytes the kernel took of a, b and c (in that order) in one
// non-blocking sendmsg, 0 when it took none (EAGAIN: the socket buffer is full), or -errno (EPIPE,
// ECONNRESET...: the caller hands the bytes to Node, whose own write then reports the error).
// MSG_NOSIGNAL: a peer that has gone never raises SIGPIPE. The buffers are only read during the
// call: the kernel copies what it takes.
static napi_value send_parts(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  if (!get_args(env, info, 4, argv)) return NULL;
  int32_t fd;
  struct iovec iov[3];
  int n = 0;
  int ok = napi_get_value_int32(env, argv[0], &fd) == napi_ok && fd >= 0;
  for (int i = 1; ok && i < 4; i++) {
    void *data;
    size_t len;
    ok = napi_get_buffer_info(env, argv[i], &data, &len) == napi_ok;
    if (ok && len != 0) {
      iov[n].iov_base = data;
      iov[n].iov_len = len;
      n++;
    }
  }
  if (!ok) {
    napi_throw_type_error(env, "EINVAL", "sendParts(fd: number, a: Buffer, b: Buffer, c: Buffer)");
    return NULL;
  }
  struct msghdr msg;
  memset(&msg, 0, sizeof msg);
  msg.msg_iov = iov;
  msg.msg_iovlen = (size_t)n;
  ssize_t r;
  do {
    r = n == 0 ? 0 : sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
  } while (r < 0 && errno == EINTR);
  int64_t out = r >= 0 ? (int64_t)r : (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : -(int64_t)errno;
  napi_value result;
  napi_create_int64(env, out, &result);
  return result;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"tryLock", NULL, try_lock, NULL, NULL, NULL, napi_enumerable, NULL},
      {"unlock", NULL, unlock, NULL, NULL, NULL, napi_enumerable, NULL},
      {"preallocate", NULL, preallocate, NULL, NULL, NULL, napi_enumerable, NULL},
      {"lockByte", NULL, lock_byte, NULL, NULL, NULL, napi_enumerable, NULL},
      {"byteLocked", NULL, byte_locked, NULL, NULL, NULL, napi_enumerable, NULL},
      {"unlockByte", NULL, unlock_byte, NULL, NULL, NULL, napi_enumerable, NULL},
      {"atomicStore", NULL, atomic_store_fn, NULL, NULL, NULL, napi_enumerable, NULL},
      {"firstNonZero", NULL, first_non_zero, NULL, NULL, NULL, napi_enumerable, NULL},
      {"atomicLoad", NULL, atomic_load_fn, NULL, NULL, NULL, napi_enumerable, NULL},
      {"keyFind", NULL, key_find, NULL, NULL, NULL, napi_enumerable, NULL},
      {"sendParts", NULL, send_parts, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
