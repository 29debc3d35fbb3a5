/*
 * util/assert.h -- invariants as checks.
 *
 * An invariant (a lock order, "loop thread only", a counter that must not go
 * backwards, an ordering a merge relies on) is stated once, in a comment
 * beside the code that relies on it, and checked with one of these macros, so
 * that prose cannot drift from the code. Asserts are for invariants and
 * programmer errors only: input, disk contents and network bytes are checked
 * with an om_status and a message, never asserted.
 *
 *   OM_ASSERT(cond)        on in debug and sanitizer builds (NDEBUG unset:
 *                          meson's b_ndebug=if-release turns it off only in
 *                          release builds); cheap checks on hot paths.
 *   OM_ASSERT_ALWAYS(cond) on in every build; for the few checks that guard
 *                          data (a version that must increase before it is
 *                          written), where continuing would corrupt state.
 *
 * A failed check logs one ERROR line naming the expression, file, line and
 * function, then aborts (SIGABRT): tests that break an invariant on purpose
 * expect that signal (tcase_add_test_raise_signal).
 *
 * Thread ownership: om_thread_owner records which thread owns an object
 * ("loop thread only"); OM_ASSERT_OWNER(&o) checks the caller is that thread.
 *
 * Thread-safety: the macros may be used from any thread.
 */
#ifndef OM_UTIL_ASSERT_H
#define OM_UTIL_ASSERT_H

#include <pthread.h>
#include <stdbool.h>

#if defined(__GNUC__)
#define OM_NORETURN __attribute__((noreturn))
#define OM_UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#define OM_NORETURN
#define OM_UNLIKELY(x) (x)
#endif

/* Log the failed check and abort. Use through the macros. */
OM_NORETURN void om_assert_fail(const char *expr, const char *file, int line, const char *func);

#define OM_ASSERT_ALWAYS(cond)                                                                     \
    do {                                                                                           \
        if (OM_UNLIKELY(!(cond)))                                                                  \
            om_assert_fail(#cond, __FILE__, __LINE__, __func__);                                   \
    } while (0)

#ifdef NDEBUG
#define OM_ASSERTS_ON 0
#define OM_ASSERT(cond) ((void)sizeof(!(cond)))
#else
#define OM_ASSERTS_ON 1
#define OM_ASSERT(cond) OM_ASSERT_ALWAYS(cond)
#endif

/*
 * om_thread_owner -- the thread an object belongs to. om_thread_owner_set()
 * claims it for the calling thread (call it from that thread, before others
 * can reach the object); OM_ASSERT_OWNER checks the caller is that thread.
 */
typedef struct om_thread_owner {
    pthread_t id;
    bool set;
} om_thread_owner;

static inline void
om_thread_owner_set(om_thread_owner *o)
{
    o->id = pthread_self();
    o->set = true;
}

static inline bool
om_thread_owner_is_me(const om_thread_owner *o)
{
    return !o->set || pthread_equal(o->id, pthread_self());
}

#define OM_ASSERT_OWNER(o) OM_ASSERT(om_thread_owner_is_me(o))

#endif /* OM_UTIL_ASSERT_H */
