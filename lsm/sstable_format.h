/*
 * lsm/sstable_format.h -- constants of the SSTable byte layout (private to lsm/).
 *
 * The layout itself is described in lsm/FORMAT.md, section "SSTable":
 *
 *   [data block + trailer]* [filter block + trailer]? [index block + trailer]
 *   [properties block + trailer] [footer]
 *
 * A block trailer is 1 byte of compression type followed by a fixed32 LE
 * checksum, om_checksum32 over the stored block bytes and the type byte. The
 * footer has a fixed size so a reader finds it at file_size - footer size.
 *
 * Thread-safety: constants only.
 */
#ifndef OM_LSM_SSTABLE_FORMAT_H
#define OM_LSM_SSTABLE_FORMAT_H

#include <stdint.h>

/* Block trailer: type byte + fixed32 checksum. */
#define LSM_BLOCK_TRAILER_SIZE 5

/* Compression types (the trailer's first byte). */
#define LSM_BLOCK_RAW 0
#define LSM_BLOCK_ZSTD 1

/* A block is stored compressed only if that saves at least 1/8 (12.5%) of its bytes. */
#define LSM_COMPRESS_MIN_SAVING_SHIFT 3

/* No block, compressed or not, may exceed this (a sanity bound against corrupt handles). */
#define LSM_MAX_BLOCK_SIZE (256u * 1024u * 1024u)

/* A block handle in the footer: fixed64 offset, fixed64 size (size excludes the trailer). */
#define LSM_BLOCK_HANDLE_SIZE 16

/*
 * Footer (64 bytes):
 *   filter handle (16) | index handle (16) | properties handle (16) |
 *   fixed32 format version | fixed32 checksum of the 52 bytes before it |
 *   fixed64 magic
 */
#define LSM_FOOTER_SIZE 64
#define LSM_FOOTER_CHECKED_SIZE 52
/* Version 2: data blocks may carry a key index (lsm/block.h); readers take 1 and 2. */
#define LSM_SST_FORMAT_VERSION 2u
#define LSM_SST_FORMAT_V1 1u
#define LSM_SST_MAGIC UINT64_C(0x31747373746d6a6f) /* "ojmtsst1" little-endian */

/* Index blocks use a restart point at every entry so a seek is a pure binary search. */
#define LSM_INDEX_RESTART_INTERVAL 1

/* The bloom filter: bit array followed by one byte holding the probe count (1..30). */
#define LSM_BLOOM_MAX_PROBES 30

/* Property names in the properties block (a block of name -> varint64 or bytes). */
#define LSM_PROP_DATA_BLOCKS "data.blocks"
#define LSM_PROP_DATA_BYTES "data.bytes"
#define LSM_PROP_DELETIONS "deletions"
#define LSM_PROP_ENTRIES "entries"
#define LSM_PROP_FILTER_BYTES "filter.bytes"
#define LSM_PROP_INDEX_BYTES "index.bytes"
#define LSM_PROP_LARGEST "key.largest"
#define LSM_PROP_SMALLEST "key.smallest"
#define LSM_PROP_RAW_DATA_BYTES "raw.data.bytes"
#define LSM_PROP_RAW_KEY_BYTES "raw.key.bytes"
#define LSM_PROP_RAW_VALUE_BYTES "raw.value.bytes"
#define LSM_PROP_SEQ_LARGEST "seq.largest"
#define LSM_PROP_SEQ_SMALLEST "seq.smallest"

#endif /* OM_LSM_SSTABLE_FORMAT_H */
