/*
 * lsm/filename.h -- names of the files in a database directory (private).
 *
 *   NNNNNN.log       write-ahead log (FORMAT.md "WAL")
 *   NNNNNN.sst       SSTable (lsm_sst_path, FORMAT.md "SSTable")
 *   MANIFEST-NNNNNN  version edits (FORMAT.md "MANIFEST")
 *   CURRENT          the name of the live MANIFEST and a newline
 *   CURRENT.tmp      CURRENT being replaced (write, fsync, rename)
 *   LOCK             advisory lock held by the process that has the db open
 *
 * NNNNNN is a decimal file number, zero-padded to at least six digits. All
 * numbers come from one counter (the MANIFEST's next file number).
 *
 * Thread-safety: pure functions.
 */
#ifndef OM_LSM_FILENAME_H
#define OM_LSM_FILENAME_H

#include <stddef.h>
#include <stdint.h>

#include "util/status.h"

typedef enum lsm_ftype {
    LSM_FT_LOG,
    LSM_FT_SST,
    LSM_FT_MANIFEST,
    LSM_FT_CURRENT,
    LSM_FT_TEMP,
    LSM_FT_LOCK,
} lsm_ftype;

#define LSM_PATH_MAX 4096

/* "<dir>/<name>" for the given type and number (number ignored where unused). */
void lsm_fname(char *buf, size_t n, const char *dir, lsm_ftype type, uint64_t number);

/* Parse a directory entry name. Returns OM_OK and sets type/number; OM_E_INVALID if not ours. */
om_status lsm_fname_parse(const char *name, lsm_ftype *type, uint64_t *number);

#endif /* OM_LSM_FILENAME_H */
