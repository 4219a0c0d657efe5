/* strerror.c - text for the negative errno values tally returns. */
#include "tally.h"

#include <errno.h>

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
        return "call would wait for itself (remove inside a visit callback)";
    case -EBUSY:
        return "resource busy";
    default:
        return "unknown error";
    }
}
