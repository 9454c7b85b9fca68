/* CDPDK has no C code of its own: the shims are static inline in include/cdpdk.h. */
