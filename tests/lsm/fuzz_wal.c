/*
 * tests/lsm/fuzz_wal.c -- libFuzzer target for the log reader and the two
 * payload decoders that run on its output (write batches, version edits).
 * Any input must end in a record stream, a clean or torn end, or
 * OM_E_CORRUPT -- never a crash, a hang or a read out of bounds.
 *
 * Built as a fuzzer with -Dfuzz=true and CC=clang; the normal build links
 * the same entry point into test_fuzz_wal_smoke, which feeds it a few
 * hundred generated and mutated inputs.
 */
#include <stddef.h>
#include <stdint.h>

#include "lsm/batch.h"
#include "lsm/manifest.h"
#include "lsm/wal_format.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static om_status
fuzz_batch_op(void *arg, uint64_t seq, lsm_vtype type, om_slice key, om_slice value)
{
    size_t *sum = arg;

    *sum += (size_t)seq + (size_t)type + key.n + value.n;
    return OM_OK;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    lsm_wal_reader *r;
    om_slice rec;
    om_status st;
    size_t sum = 0;
    uint64_t last_end = 0;

    if (lsm_wal_reader_mem(data, size, &r) != OM_OK)
        return 0;
    while ((st = lsm_wal_read(r, &rec)) == OM_OK) {
        lsm_edit e;

        /* The reported offset only moves forward and stays inside the input. */
        if (lsm_wal_reader_offset(r) < last_end || lsm_wal_reader_offset(r) > size)
            __builtin_trap();
        last_end = lsm_wal_reader_offset(r);
        lsm_batch_iterate(rec, fuzz_batch_op, &sum);
        lsm_edit_init(&e);
        lsm_edit_decode(rec, &e);
        lsm_edit_fini(&e);
    }
    if (st != OM_E_NOTFOUND && st != OM_E_CORRUPT)
        __builtin_trap();
    if (lsm_wal_reader_offset(r) > size)
        __builtin_trap();
    lsm_wal_reader_close(r);
    return sum == 1 ? 1 : 0; /* keep sum alive; libFuzzer ignores the value */
}
