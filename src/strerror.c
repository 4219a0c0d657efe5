/* strerror.c - text for the negative errno values tally returns. */
#include "tally.h"

#include <errno.h>
#include <string.h>

const char *tally_strerror(int err)
{
    switch (err) {
    case 0:
        return "success";
    case -EINVAL:
        return "invalid argument";
    case -ENOMEM:
        return "out of memory";
    case -ENOENT:
        return "no such key";
    case -ENAMETOOLONG:
        return "key longer than TALLY_KEY_MAX";
    case -EDEADLK:
        return "call would wait for itself (inside a visit callback)";
    case -EBUSY:
        return "resource busy";
    case -ENOSPC:
        return "the store is at its size limit";
    case -EROFS:
        return "the store is open read-only";
    case -EACCES:
        return "permission denied";
    case -EEXIST:
        return "already exists";
    case TALLY_ENOTSTORE:
        return "not a tally store";
    case TALLY_EVERSION:
        return "tally store format version not supported by this library";
    case TALLY_ELAYOUT:
        return "tally store made on a machine of another byte order or "
               "word size";
    case TALLY_ECORRUPT:
        return "tally store is corrupt";
    default:
#if defined(__GLIBC__) && (__GLIBC__ > 2 || __GLIBC_MINOR__ >= 32)
        /* Other errno values come from the system (a store's open): its
         * own static, thread-safe description. */
        if (err < 0 && err > -4096) {
            const char *d = strerrordesc_np(-err);
            if (d != NULL)
                return d;
        }
#endif
        return "unknown error";
    }
}
