// OS calls the engine needs that neither Node nor mmap-io offers:
//  - flock(2): one writer per table across processes (advisory, released by the kernel when the
//    process dies, so a SIGKILLed writer never leaves a stale lock behind);
//  - posix_fallocate(3): reserve disk blocks before a range is mapped, so a full disk surfaces as
//    ENOSPC on the write path instead of SIGBUS when a sparse page is first touched.
// Errors are thrown with `code` set to the errno name, like Node's own fs errors.
#include <errno.h>
#include <fcntl.h>
#include <node_api.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>

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

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"tryLock", NULL, try_lock, NULL, NULL, NULL, napi_enumerable, NULL},
      {"unlock", NULL, unlock, NULL, NULL, NULL, napi_enumerable, NULL},
      {"preallocate", NULL, preallocate, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
