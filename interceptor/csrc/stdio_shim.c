/*
 * liblogtap's C shim: the entry points Rust 1.95 cannot define because they are C-variadic
 * (printf(fmt, ...), prctl(option, ...)), plus the rest of the stdio family so that all of
 * stdio is handled in one place. (open/openat/fcntl are variadic too: their C entry points
 * are in variadic.c, their logic in interceptor/src/hooks/open.rs.)
 *
 * Why stdio needs its own hooks: glibc's stdio reaches the kernel through an internal alias of
 * write() that LD_PRELOAD cannot interpose, so a preloaded write() never sees printf's bytes.
 * So, for a FILE whose descriptor is tapped (stdout, stderr, a tap file), the shim
 *   1. formats with vsnprintf into a per-thread buffer (an anonymous mmap when the output is
 *      longer: never malloc),
 *   2. under flockfile(stream) writes the bytes into the FILE with the real fwrite and hands
 *      the bytes the FILE accepted to Rust (logtap_stdio_deliver) -- the lock keeps the tapped
 *      order equal to the order of the bytes in the FILE when threads print concurrently,
 *   3. returns what the real function would have returned.
 * The printf family on a fully buffered FILE that is not suppressed (stdout into a pipe or a
 * file: the container case) skips steps 1-2: under the lock, the real vfprintf formats straight
 * into the FILE's buffer and the new bytes are tapped from there (see in_place/tap_in_place),
 * which makes a tapped printf cost one formatting pass instead of two.
 * A suppressed stream skips the fwrite unless Rust could not deliver the copy (no agent, ring
 * full): then the undelivered bytes go to the FILE after all (fail open, nothing lost).
 * For every other FILE the shim calls the real function at once: one fileno() and one relaxed
 * table lookup of cost.
 *
 * Bytes that reach a FILE's buffer without a call -- glibc's putc_unlocked, putchar_unlocked and
 * fputc_unlocked are macros that -O2 programs (coreutils among them) inline -- are caught up from
 * the buffer itself: per tapped FILE the shim keeps a mark, how far the buffer has been tapped,
 * and taps [mark, _IO_write_ptr) at every point where the FILE may hand its buffer to the
 * kernel: every hooked output call (before its own bytes), __overflow (the function those
 * macros call when the buffer is full, and for every character of a line-buffered stream),
 * fflush, the fseek family, fclose, and the library's destructor (exit flushes stdio after
 * it). A forked child starts with no mark: what it inherited in the buffer is tapped again if
 * the child writes it out too (the kernel then gets it twice as well). On a suppressed stream
 * the caught-up bytes are taken out of the buffer once delivered, so they never reach the
 * descriptor. See "stdio fidelity" in interceptor/src/lib.rs.
 *
 * stdio is not async-signal-safe itself, so these hooks may use a per-thread buffer; a nested
 * call on the same thread (a printf from a custom printf specifier, or from a signal handler,
 * which POSIX forbids anyway) finds the buffer busy and is passed through untapped.
 *
 * Real functions are resolved once with dlsym(RTLD_NEXT) (logtap_shim_init, called from the
 * library constructor; lazily as a fallback) and cached in atomics.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <err.h>
#include <error.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>
#include <wchar.h>

/* With optimisation glibc turns some stdio names into macros (bits/stdio.h); this file defines
 * the functions themselves. (The extern-inline ones may be redefined as they are gnu_inline.) */
#undef fwrite_unlocked
#undef putc
#undef putchar
#undef fputc_unlocked
#undef putc_unlocked
#undef putchar_unlocked

/* ---- the Rust side (interceptor/src/hooks/stdio.rs) ---- */
/* 0: not tapped now; else a route code for logtap_stdio_deliver. Preserves errno. */
extern int logtap_stdio_route(int fd);
/* Taps bytes the FILE accepted; returns how many a suppressed route delivered. Preserves errno. */
extern size_t logtap_stdio_deliver(int route, const char *buf, size_t len);
/* The same for two pieces that form one write (a line and its newline). */
extern size_t logtap_stdio_deliver2(int route, const char *a, size_t na, const char *b,
                                    size_t nb);
/* The write() hook's logic (tap, suppress, real write) for dprintf. */
extern ssize_t logtap_fd_write(int fd, const void *buf, size_t len);
/* The program is about to change whether rdtsc may fault (PR_SET_TSC): stamp records with
 * clock_gettime from now on (interceptor/src/clock.rs). */
extern void logtap_clock_tsc_off(void);

#define ROUTE_SUPPRESSED 4

/* glibc's FORTIFY formatter; declared here because no public header does. */
extern int __vsnprintf_chk(char *s, size_t maxlen, int flag, size_t slen, const char *format,
                           va_list ap);

/* ---- real functions ---- */
#define REAL_FN(ret, name, params)                                                         \
    typedef ret(*name##_fn) params;                                                        \
    static name##_fn real_##name##_ptr;                                                    \
    static name##_fn real_##name(void) {                                                   \
        name##_fn f = __atomic_load_n(&real_##name##_ptr, __ATOMIC_ACQUIRE);               \
        if (!f) {                                                                          \
            f = (name##_fn)dlsym(RTLD_NEXT, #name);                                        \
            __atomic_store_n(&real_##name##_ptr, f, __ATOMIC_RELEASE);                     \
        }                                                                                  \
        return f;                                                                          \
    }

REAL_FN(int, vfprintf, (FILE *, const char *, va_list))
REAL_FN(int, __vfprintf_chk, (FILE *, int, const char *, va_list))
REAL_FN(int, vdprintf, (int, const char *, va_list))
REAL_FN(int, __vdprintf_chk, (int, int, const char *, va_list))
REAL_FN(size_t, fwrite, (const void *, size_t, size_t, FILE *))
REAL_FN(size_t, fwrite_unlocked, (const void *, size_t, size_t, FILE *))
REAL_FN(int, puts, (const char *))
REAL_FN(int, fputs, (const char *, FILE *))
REAL_FN(int, fputs_unlocked, (const char *, FILE *))
REAL_FN(int, fputc, (int, FILE *))
REAL_FN(int, putc, (int, FILE *))
REAL_FN(int, _IO_putc, (int, FILE *))
REAL_FN(int, putchar, (int))
REAL_FN(int, fputc_unlocked, (int, FILE *))
REAL_FN(int, putc_unlocked, (int, FILE *))
REAL_FN(int, putchar_unlocked, (int))
REAL_FN(void, perror, (const char *))
REAL_FN(int, __overflow, (FILE *, int))
REAL_FN(void, error, (int, int, const char *, ...))
REAL_FN(void, error_at_line, (int, int, const char *, unsigned int, const char *, ...))
REAL_FN(void, vwarn, (const char *, va_list))
REAL_FN(void, vwarnx, (const char *, va_list))
REAL_FN(int, fflush, (FILE *))
REAL_FN(int, fflush_unlocked, (FILE *))
REAL_FN(int, fseek, (FILE *, long, int))
REAL_FN(int, fseeko, (FILE *, off_t, int))
REAL_FN(int, fseeko64, (FILE *, off64_t, int))
REAL_FN(void, rewind, (FILE *))
REAL_FN(int, fsetpos, (FILE *, const fpos_t *))
REAL_FN(int, fsetpos64, (FILE *, const fpos64_t *))
REAL_FN(int, prctl, (int, unsigned long, unsigned long, unsigned long, unsigned long))

/* Resolves every real function now (from the library constructor), so that no hook calls
 * dlsym later, possibly from a signal handler. */
void logtap_shim_init(void) {
    (void)real_vfprintf(); (void)real___vfprintf_chk(); (void)real_vdprintf();
    (void)real___vdprintf_chk(); (void)real_fwrite(); (void)real_fwrite_unlocked();
    (void)real_puts(); (void)real_fputs(); (void)real_fputs_unlocked(); (void)real_fputc();
    (void)real_putc(); (void)real__IO_putc(); (void)real_putchar(); (void)real_fputc_unlocked();
    (void)real_putc_unlocked(); (void)real_putchar_unlocked(); (void)real_perror();
    (void)real___overflow(); (void)real_error(); (void)real_error_at_line(); (void)real_vwarn();
    (void)real_vwarnx(); (void)real_fflush(); (void)real_fflush_unlocked();
    (void)real_fseek(); (void)real_fseeko(); (void)real_fseeko64(); (void)real_rewind();
    (void)real_fsetpos(); (void)real_fsetpos64(); (void)real_prctl();
}

/* glibc's FILE flags (libio.h; their values have not changed since glibc 2.0). */
#define LIBIO_UNBUFFERED 0x0002
#define LIBIO_LINE_BUF 0x0200
#define LIBIO_CURRENTLY_PUTTING 0x0800

/* ---- how far each tapped FILE's buffer has been tapped ---- */
/* A FILE's entry is claimed by CAS on `f` and then used only under the FILE's lock (`at` is
 * read and written atomically all the same, since the untapped path and the fork and exit
 * handlers touch it without the lock). `at == NULL`: nothing in the buffer is tapped. */
#define MARKS 64
struct mark {
    FILE *f;
    char *at;
};
static struct mark marks[MARKS];
static int marks_hi; /* entries [0, marks_hi) may be in use */

static struct mark *find_mark(FILE *f) {
    int hi = __atomic_load_n(&marks_hi, __ATOMIC_ACQUIRE);
    for (int i = 0; i < hi; i++)
        if (__atomic_load_n(&marks[i].f, __ATOMIC_ACQUIRE) == f) return &marks[i];
    return NULL;
}

/* f's entry, made on first use; NULL when all MARKS are taken (then inlined bytes of that FILE
 * are not caught up: it is tapped as before). */
static struct mark *mark_of(FILE *f) {
    struct mark *m = find_mark(f);
    if (m) return m;
    for (int i = 0; i < MARKS; i++) {
        FILE *expected = NULL;
        if (__atomic_compare_exchange_n(&marks[i].f, &expected, f, 0, __ATOMIC_ACQ_REL,
                                        __ATOMIC_ACQUIRE)) {
            __atomic_store_n(&marks[i].at, NULL, __ATOMIC_RELAXED);
            int hi = __atomic_load_n(&marks_hi, __ATOMIC_RELAXED);
            while (hi < i + 1 && !__atomic_compare_exchange_n(&marks_hi, &hi, i + 1, 0,
                                                              __ATOMIC_RELEASE, __ATOMIC_RELAXED)) {
            }
            return &marks[i];
        }
        if (expected == f) return &marks[i];
    }
    return NULL;
}

static void set_mark(struct mark *m, char *at) {
    if (m) __atomic_store_n(&m->at, at, __ATOMIC_RELAXED);
}

/* Where the untapped bytes of f's buffer start (they end at _IO_write_ptr), or NULL when the
 * FILE has no output buffer in use. A mark outside [_IO_write_base, _IO_write_ptr] -- none yet,
 * or the buffer was written out by a path the hooks do not see -- means all of it. */
static char *untapped_from(FILE *f, struct mark *m) {
    char *base = f->_IO_write_base, *ptr = f->_IO_write_ptr;
    if (!(f->_flags & LIBIO_CURRENTLY_PUTTING) || !base || !ptr || ptr < base ||
        base < f->_IO_buf_base || ptr > f->_IO_buf_end)
        return NULL;
    char *from = __atomic_load_n(&m->at, __ATOMIC_RELAXED);
    if (!from || from < base || from > ptr) from = base;
    return from;
}

/* Takes the bytes [from, from + n) that were just delivered out of a suppressed FILE's buffer
 * (the bytes after them move up), so they never reach the descriptor. */
static void take_out(FILE *f, char *from, size_t n) {
    char *ptr = f->_IO_write_ptr;
    if (n == 0 || from + n > ptr) return;
    memmove(from, from + n, (size_t)(ptr - (from + n)));
    f->_IO_write_ptr = ptr - n;
}

/* Taps what inlined macros put into f's buffer since the library last looked. Under the
 * FILE's lock. On a suppressed route the delivered bytes leave the buffer (what could not be
 * delivered stays, and is written for real: fail open). */
static void catch_up(FILE *f, int route, struct mark *m) {
    if (!m) return;
    char *from = untapped_from(f, m);
    if (!from) {
        set_mark(m, NULL);
        return;
    }
    size_t n = (size_t)(f->_IO_write_ptr - from);
    if (n > 0) {
        size_t d = logtap_stdio_deliver(route, from, n);
        if (route & ROUTE_SUPPRESSED) take_out(f, from, d < n ? d : n);
    }
    set_mark(m, f->_IO_write_ptr);
}

/* ---- routing and emitting ---- */
static int route_of(FILE *f) {
    if (!f) return 0;
    int fd = fileno_unlocked(f);
    if (fd < 0) return 0;
    return logtap_stdio_route(fd);
}

/* fd 1 or fd 2 became, or stopped being, a tapped stream (interceptor/src/streams.rs): what
 * waits in the buffers of the FILEs on it is untapped as far as the stream is concerned — it
 * is tapped when caught up, should it be written out while the descriptor is the stream. */
void logtap_stdio_fd_changed(int fd) {
    int hi = __atomic_load_n(&marks_hi, __ATOMIC_ACQUIRE);
    for (int i = 0; i < hi; i++) {
        FILE *f = __atomic_load_n(&marks[i].f, __ATOMIC_ACQUIRE);
        if (f && fileno_unlocked(f) == fd) set_mark(&marks[i], NULL);
    }
}

/* Locks a tapped FILE and catches it up; returns its mark (NULL: untracked). */
static struct mark *hold(FILE *f, int route) {
    flockfile(f);
    struct mark *m = mark_of(f);
    catch_up(f, route, m);
    return m;
}

/* Everything now in f's buffer is tapped (or was taken out); unlocks. */
static void unhold(FILE *f, struct mark *m) {
    set_mark(m, f->_IO_write_ptr);
    funlockfile(f);
}

/* Writes n bytes into the FILE (unless suppressed and delivered) and taps them, under the
 * FILE's lock. Returns 1 when all n bytes were accepted (or delivered), else 0. */
static int emit(FILE *f, int route, const char *buf, size_t n) {
    size_t (*fw)(const void *, size_t, size_t, FILE *) = real_fwrite();
    int ok;
    if (!fw) { errno = ENOSYS; return 0; }
    if (n == 0) return 1;
    struct mark *m = hold(f, route);
    if (route & ROUTE_SUPPRESSED) {
        size_t d = logtap_stdio_deliver(route, buf, n);
        ok = d >= n || fw(buf + d, 1, n - d, f) == n - d;
    } else {
        size_t w = fw(buf, 1, n, f);
        if (w > 0) (void)logtap_stdio_deliver(route, buf, w);
        ok = w == n;
    }
    unhold(f, m);
    return ok;
}

/* The per-thread formatting buffer. */
#define TLS_BUF 4096
static __thread char tls_buf[TLS_BUF];
/* tls_busy is read on every tapped stdio call: initial-exec, so that reading it is one
 * %fs-relative load instead of a call to __tls_get_addr (a preloaded library's TLS is part of
 * the static TLS block; glibc keeps a surplus for the 4 bytes should the library ever be
 * dlopen()ed instead). The 4 KiB buffer, only touched when the output is formatted here,
 * keeps the default model. */
static __thread int tls_busy __attribute__((tls_model("initial-exec")));

static int untapped_vfprintf(FILE *f, int chk, const char *fmt, va_list ap) {
    if (chk >= 0 && real___vfprintf_chk()) return real___vfprintf_chk()(f, chk, fmt, ap);
    if (!real_vfprintf()) { errno = ENOSYS; return -1; }
    return real_vfprintf()(f, fmt, ap);
}

static int format_into(char *buf, size_t size, int chk, const char *fmt, va_list ap) {
    if (chk >= 0) return __vsnprintf_chk(buf, size, chk, size, fmt, ap);
    return vsnprintf(buf, size, fmt, ap);
}

/* A formatted output: in tls_buf, or in an anonymous mapping when longer. */
struct formatted {
    char *p;
    int n;          /* length, or < 0 on a formatting error */
    size_t mapped;  /* bytes to munmap, 0 when p is tls_buf */
};

/* Formats fmt/ap; `again` is a copy of ap for a second pass. Needs tls_busy held. */
static struct formatted format_out(int chk, const char *fmt, va_list ap, va_list again) {
    struct formatted out = {tls_buf, 0, 0};
    out.n = format_into(tls_buf, TLS_BUF, chk, fmt, ap);
    if (out.n >= TLS_BUF) {
        size_t len = ((size_t)out.n + 1 + 4095) & ~(size_t)4095;
        void *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED) {
            out.n = -1;
            return out;
        }
        out.p = m;
        out.mapped = len;
        out.n = format_into(out.p, len, chk, fmt, again);
    }
    return out;
}

static void release(struct formatted *o) {
    if (o->mapped) munmap(o->p, o->mapped);
    tls_busy = 0;
}

/* Whether the real vfprintf will format straight into f's buffer, where the new bytes can be
 * tapped without formatting them a second time: a fully buffered FILE in output mode that
 * already has its buffer. (Unbuffered stderr formats into a helper buffer on the stack; a
 * line-buffered FILE flushes at every newline; neither leaves the bytes in the FILE.) */
static int in_place(FILE *f, int route) {
    return !(route & ROUTE_SUPPRESSED) &&
           (f->_flags & (LIBIO_UNBUFFERED | LIBIO_LINE_BUF | LIBIO_CURRENTLY_PUTTING)) ==
               LIBIO_CURRENTLY_PUTTING &&
           f->_IO_write_base != NULL;
}

/* Taps what an in-place vfprintf added to f's buffer. Under the FILE's lock, with the buffer
 * pointers as they were before the call: if the buffer is the same one and its write pointer
 * moved by exactly the count vfprintf returned, the bytes [before, after) are this call's (a
 * flush in the middle resets the pointer to the base, and the arithmetic then cannot come out
 * equal). Otherwise -- the buffer filled up during the call -- the output is formatted again
 * from `again` for the tap (a custom printf specifier then runs twice; %n stores the same). */
static void tap_in_place(FILE *f, int route, int chk, const char *base, const char *before,
                         int r, const char *fmt, va_list again) {
    const char *after = f->_IO_write_ptr;
    if (f->_IO_write_base == base && before >= base && after >= before &&
        (size_t)(after - before) == (size_t)r) {
        (void)logtap_stdio_deliver(route, before, (size_t)r);
        return;
    }
    int saved = errno;
    va_list again2;
    va_copy(again2, again);
    struct formatted o = format_out(chk, fmt, again, again2);
    va_end(again2);
    if (o.n > 0) (void)logtap_stdio_deliver(route, o.p, (size_t)(o.n < r ? o.n : r));
    /* Only the mapping: tls_busy stays with the caller, which clears it when it is done. */
    if (o.mapped) munmap(o.p, o.mapped);
    errno = saved;
}

/* vfprintf on a tapped FILE. chk < 0: plain, else the FORTIFY flag. */
static int tapped_vfprintf(FILE *f, int route, int chk, const char *fmt, va_list ap) {
    if (tls_busy) return untapped_vfprintf(f, chk, fmt, ap);
    tls_busy = 1;
    /* The flags read without the lock are only a hint (as fileno_unlocked is): a FILE that is
     * not fully buffered (stderr, a terminal) goes to the path below without locking twice;
     * under the lock the check is made again before the pointers are trusted. */
    if (in_place(f, route)) {
        struct mark *m = hold(f, route);
        if (in_place(f, route)) {
            va_list again;
            va_copy(again, ap);
            const char *base = f->_IO_write_base, *before = f->_IO_write_ptr;
            int r = untapped_vfprintf(f, chk, fmt, ap);
            if (r > 0) tap_in_place(f, route, chk, base, before, r, fmt, again);
            va_end(again);
            unhold(f, m);
            tls_busy = 0;
            return r;
        }
        unhold(f, m);
    }
    va_list again, fallback;
    va_copy(again, ap);
    va_copy(fallback, ap);
    struct formatted o = format_out(chk, fmt, ap, again);
    va_end(again);
    int r;
    if (o.n < 0) {
        /* Let the real function report the formatting error (or print, if only the mmap
         * failed) exactly as it would have: nothing is tapped. */
        release(&o);
        r = untapped_vfprintf(f, chk, fmt, fallback);
    } else {
        r = emit(f, route, o.p, (size_t)o.n) ? o.n : -1;
        release(&o);
    }
    va_end(fallback);
    return r;
}

static int vfprintf_common(FILE *f, int chk, const char *fmt, va_list ap) {
    int route = route_of(f);
    if (!route) return untapped_vfprintf(f, chk, fmt, ap);
    return tapped_vfprintf(f, route, chk, fmt, ap);
}

int vfprintf(FILE *f, const char *fmt, va_list ap) { return vfprintf_common(f, -1, fmt, ap); }
int vprintf(const char *fmt, va_list ap) { return vfprintf_common(stdout, -1, fmt, ap); }
int __vfprintf_chk(FILE *f, int flag, const char *fmt, va_list ap) {
    return vfprintf_common(f, flag, fmt, ap);
}
int __vprintf_chk(int flag, const char *fmt, va_list ap) {
    return vfprintf_common(stdout, flag, fmt, ap);
}

int printf(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int r = vfprintf_common(stdout, -1, fmt, ap);
    va_end(ap);
    return r;
}

int fprintf(FILE *f, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int r = vfprintf_common(f, -1, fmt, ap);
    va_end(ap);
    return r;
}

int __printf_chk(int flag, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int r = vfprintf_common(stdout, flag, fmt, ap);
    va_end(ap);
    return r;
}

int __fprintf_chk(FILE *f, int flag, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int r = vfprintf_common(f, flag, fmt, ap);
    va_end(ap);
    return r;
}

/* dprintf family: glibc formats into a temporary FILE that writes with the internal write, so
 * these are formatted here and written through the write() hook's logic. */
static int vdprintf_common(int fd, int chk, const char *fmt, va_list ap) {
    if (!logtap_stdio_route(fd) || tls_busy) {
        if (chk >= 0 && real___vdprintf_chk()) return real___vdprintf_chk()(fd, chk, fmt, ap);
        if (!real_vdprintf()) { errno = ENOSYS; return -1; }
        return real_vdprintf()(fd, fmt, ap);
    }
    tls_busy = 1;
    va_list again, fallback;
    va_copy(again, ap);
    va_copy(fallback, ap);
    struct formatted o = format_out(chk, fmt, ap, again);
    va_end(again);
    int r;
    if (o.n < 0) {
        release(&o);
        r = chk >= 0 && real___vdprintf_chk() ? real___vdprintf_chk()(fd, chk, fmt, fallback)
                                               : real_vdprintf()(fd, fmt, fallback);
    } else {
        size_t done = 0;
        r = o.n;
        while (done < (size_t)o.n) {
            ssize_t w = logtap_fd_write(fd, o.p + done, (size_t)o.n - done);
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) { r = -1; break; }
            done += (size_t)w;
        }
        release(&o);
    }
    va_end(fallback);
    return r;
}

int vdprintf(int fd, const char *fmt, va_list ap) { return vdprintf_common(fd, -1, fmt, ap); }
int __vdprintf_chk(int fd, int flag, const char *fmt, va_list ap) {
    return vdprintf_common(fd, flag, fmt, ap);
}
int dprintf(int fd, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int r = vdprintf_common(fd, -1, fmt, ap);
    va_end(ap);
    return r;
}
int __dprintf_chk(int fd, int flag, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int r = vdprintf_common(fd, flag, fmt, ap);
    va_end(ap);
    return r;
}

/* ---- unformatted output ---- */
int puts(const char *s) {
    int route = route_of(stdout);
    if (!route || tls_busy) return real_puts() ? real_puts()(s) : EOF;
    size_t n = strlen(s);
    int ok;
    if (n < TLS_BUF) {
        /* One tap record for the line and its newline. */
        tls_busy = 1;
        memcpy(tls_buf, s, n);
        tls_buf[n] = '\n';
        ok = emit(stdout, route, tls_buf, n + 1);
        tls_busy = 0;
    } else {
        flockfile(stdout);
        ok = emit(stdout, route, s, n) && emit(stdout, route, "\n", 1);
        funlockfile(stdout);
    }
    if (!ok) return EOF;
    return n + 1 > (size_t)INT32_MAX ? INT32_MAX : (int)(n + 1);
}

static int fputs_common(const char *s, FILE *f, int unlocked) {
    int route = route_of(f);
    if (!route) {
        fputs_fn real = unlocked ? (fputs_fn)real_fputs_unlocked() : real_fputs();
        return real ? real(s, f) : EOF;
    }
    return emit(f, route, s, strlen(s)) ? 1 : EOF;
}
int fputs(const char *s, FILE *f) { return fputs_common(s, f, 0); }
int fputs_unlocked(const char *s, FILE *f) { return fputs_common(s, f, 1); }

static int putc_common(int c, FILE *f, fputc_fn real) {
    int route = route_of(f);
    if (!route) return real ? real(c, f) : EOF;
    unsigned char ch = (unsigned char)c;
    return emit(f, route, (const char *)&ch, 1) ? (int)ch : EOF;
}
int fputc(int c, FILE *f) { return putc_common(c, f, real_fputc()); }
int putc(int c, FILE *f) { return putc_common(c, f, (fputc_fn)real_putc()); }
int _IO_putc(int c, FILE *f) { return putc_common(c, f, (fputc_fn)real__IO_putc()); }
int fputc_unlocked(int c, FILE *f) { return putc_common(c, f, (fputc_fn)real_fputc_unlocked()); }
int putc_unlocked(int c, FILE *f) { return putc_common(c, f, (fputc_fn)real_putc_unlocked()); }
int putchar(int c) {
    if (!route_of(stdout)) return real_putchar() ? real_putchar()(c) : EOF;
    return putc_common(c, stdout, real_fputc());
}
int putchar_unlocked(int c) {
    if (!route_of(stdout)) return real_putchar_unlocked() ? real_putchar_unlocked()(c) : EOF;
    return putc_common(c, stdout, real_fputc());
}

static size_t fwrite_common(const void *p, size_t size, size_t nmemb, FILE *f, fwrite_fn real) {
    int route = route_of(f);
    if (!real) { errno = ENOSYS; return 0; }
    if (!route || size == 0 || nmemb == 0 || nmemb > SIZE_MAX / size)
        return real(p, size, nmemb, f);
    size_t total = size * nmemb;
    struct mark *m = hold(f, route);
    if (route & ROUTE_SUPPRESSED) {
        size_t d = logtap_stdio_deliver(route, p, total);
        size_t w = d < total ? real((const char *)p + d, 1, total - d, f) : 0;
        unhold(f, m);
        return (d + w) / size;
    }
    size_t items = real(p, size, nmemb, f);
    if (items > 0) (void)logtap_stdio_deliver(route, p, items * size);
    unhold(f, m);
    return items;
}
size_t fwrite(const void *p, size_t size, size_t nmemb, FILE *f) {
    return fwrite_common(p, size, nmemb, f, real_fwrite());
}
size_t fwrite_unlocked(const void *p, size_t size, size_t nmemb, FILE *f) {
    return fwrite_common(p, size, nmemb, f, (fwrite_fn)real_fwrite_unlocked());
}

/* perror(s) prints "s: <strerror(errno)>\n" (or just the message) on stderr. */
static int perror_format(const char *s, ...) {
    va_list ap;
    va_start(ap, s);
    int r = vfprintf_common(stderr, -1, (s && *s) ? "%s: %m\n" : "%m\n", ap);
    va_end(ap);
    return r;
}
void perror(const char *s) {
    if (!route_of(stderr)) {
        if (real_perror()) real_perror()(s);
        return;
    }
    (void)perror_format(s, s);
}

/* ---- where a FILE may hand its buffer to the kernel ---- */

/* __overflow(f, c): what glibc's inlined putc_unlocked & co. call when f's buffer has no room
 * (always, for a line-buffered or unbuffered FILE), and what stores c then. The bytes waiting
 * in the buffer are tapped when this call writes them out -- a full buffer, a newline on a
 * line-buffered FILE, an unbuffered FILE -- and not before, so that a line put character by
 * character becomes one record. */
static int overflow_flushes(FILE *f, int c) {
    int fl = f->_flags;
    if (c == EOF || (fl & LIBIO_UNBUFFERED)) return 1;
    int line = fl & LIBIO_LINE_BUF;
    if (!line && f->_IO_write_base == NULL && (unsigned char)c == '\n') {
        /* No buffer yet: glibc makes the FILE line-buffered when it allocates one for a
         * terminal, in this very call. */
        int e = errno;
        line = isatty(fileno_unlocked(f));
        errno = e;
    }
    if (line && (unsigned char)c == '\n') return 1;
    return f->_IO_write_base != NULL && f->_IO_write_ptr >= f->_IO_buf_end;
}

static int overflow_tapped(FILE *f, int route, struct mark *m, int c, __overflow_fn real) {
    if (!m) return real(f, c);
    if (!overflow_flushes(f, c)) return real(f, c); /* c waits in the buffer, untapped */
    char *from = untapped_from(f, m);
    int fl = f->_flags;
    unsigned char ch = (unsigned char)c;
    if (c != EOF && from && f->_IO_write_ptr < f->_IO_buf_end &&
        ((fl & LIBIO_UNBUFFERED) || ((fl & LIBIO_LINE_BUF) && ch == '\n'))) {
        /* c is stored, then the buffer written out: one record for both. */
        (void)logtap_stdio_deliver2(route, from, (size_t)(f->_IO_write_ptr - from),
                                    (const char *)&ch, 1);
        int r = real(f, c);
        set_mark(m, f->_IO_write_ptr);
        return r;
    }
    /* A full buffer (or none yet): what waits goes out first, then c is stored. */
    catch_up(f, route, m);
    int r = real(f, c);
    char *base = f->_IO_write_base, *ptr = f->_IO_write_ptr;
    if (r == EOF || c == EOF) {
        set_mark(m, ptr);
    } else if (base && ptr > base) {
        set_mark(m, ptr - 1); /* c waits in the buffer (a write-out would have emptied it) */
    } else {
        (void)logtap_stdio_deliver(route, (const char *)&ch, 1);
        set_mark(m, ptr);
    }
    return r;
}

static int overflow_suppressed(FILE *f, int route, struct mark *m, int c, __overflow_fn real) {
    if (!m) return real(f, c);
    unsigned char ch = (unsigned char)c;
    char *from = untapped_from(f, m);
    if (c != EOF && from && overflow_flushes(f, c) && f->_IO_write_ptr < f->_IO_buf_end) {
        /* The waiting bytes and c would be written out: deliver them instead. */
        size_t n = (size_t)(f->_IO_write_ptr - from);
        size_t d = logtap_stdio_deliver2(route, from, n, (const char *)&ch, 1);
        take_out(f, from, d < n ? d : n);
        set_mark(m, f->_IO_write_ptr);
        if (d > n) return ch;
        /* Not all delivered: the rest and c are written for real (fail open). */
        int r = real(f, c);
        set_mark(m, f->_IO_write_ptr);
        return r;
    }
    catch_up(f, route, m); /* delivered and taken out; what could not be delivered stays */
    if (c != EOF && !overflow_flushes(f, c)) {
        int r = real(f, c); /* stored, nothing written */
        char *base = f->_IO_write_base, *ptr = f->_IO_write_ptr;
        set_mark(m, r != EOF && base && ptr > base ? ptr - 1 : ptr);
        return r;
    }
    if (c != EOF && f->_IO_write_ptr == f->_IO_write_base &&
        logtap_stdio_deliver(route, (const char *)&ch, 1) == 1)
        return ch;
    int r = real(f, c);
    set_mark(m, f->_IO_write_ptr);
    return r;
}

int __overflow(FILE *f, int c) {
    __overflow_fn real = real___overflow();
    if (!real) { errno = ENOSYS; return EOF; }
    int route = route_of(f);
    if (!route || tls_busy) return real(f, c);
    flockfile(f);
    struct mark *m = mark_of(f);
    int r = (route & ROUTE_SUPPRESSED) ? overflow_suppressed(f, route, m, c, real)
                                       : overflow_tapped(f, route, m, c, real);
    funlockfile(f);
    return r;
}

/* Catches up every tracked FILE that is tapped now (fflush(NULL), exit). `lock`: 0 at exit,
 * where another thread may hold a FILE's lock for ever (glibc's own exit flush does not lock
 * either): a locked FILE is then caught up only if it is not suppressed (reading its buffer;
 * taking bytes out of it under another thread's feet is not safe). */
static void catch_up_all(int lock) {
    int hi = __atomic_load_n(&marks_hi, __ATOMIC_ACQUIRE);
    for (int i = 0; i < hi; i++) {
        FILE *f = __atomic_load_n(&marks[i].f, __ATOMIC_ACQUIRE);
        if (!f) continue;
        int route = route_of(f);
        if (!route) continue;
        if (lock) {
            flockfile(f);
        } else if (ftrylockfile(f) != 0) {
            if (!(route & ROUTE_SUPPRESSED)) catch_up(f, route, &marks[i]);
            continue;
        }
        catch_up(f, route, &marks[i]);
        funlockfile(f);
    }
}

static int flush_common(FILE *f, fflush_fn real) {
    if (!real) { errno = ENOSYS; return EOF; }
    if (tls_busy) return real(f);
    if (!f) {
        catch_up_all(1);
        return real(f);
    }
    int route = route_of(f);
    if (!route) return real(f);
    struct mark *m = hold(f, route);
    int r = real(f);
    unhold(f, m);
    return r;
}
int fflush(FILE *f) { return flush_common(f, real_fflush()); }
int fflush_unlocked(FILE *f) { return flush_common(f, (fflush_fn)real_fflush_unlocked()); }

/* The fseek family writes out what waits in the buffer before moving. */
#define SEEK_HOOK(ret, name, params, args)                                                   \
    ret name params {                                                                         \
        name##_fn real = real_##name();                                                       \
        if (!real) { errno = ENOSYS; return -1; }                                             \
        int route = tls_busy ? 0 : route_of(f);                                               \
        if (!route) return real args;                                                         \
        struct mark *m = hold(f, route);                                                      \
        ret r = real args;                                                                    \
        unhold(f, m);                                                                         \
        return r;                                                                             \
    }
SEEK_HOOK(int, fseek, (FILE *f, long off, int whence), (f, off, whence))
SEEK_HOOK(int, fseeko, (FILE *f, off_t off, int whence), (f, off, whence))
SEEK_HOOK(int, fseeko64, (FILE *f, off64_t off, int whence), (f, off, whence))
SEEK_HOOK(int, fsetpos, (FILE *f, const fpos_t *pos), (f, pos))
SEEK_HOOK(int, fsetpos64, (FILE *f, const fpos64_t *pos), (f, pos))

void rewind(FILE *f) {
    rewind_fn real = real_rewind();
    if (!real) return;
    int route = tls_busy ? 0 : route_of(f);
    if (!route) {
        real(f);
        return;
    }
    struct mark *m = hold(f, route);
    real(f);
    unhold(f, m);
}

/* fclose writes out the buffer: caught up first, then the FILE's entry is freed. */
void logtap_stdio_before_fclose(FILE *f) {
    if (!f) return;
    int route = tls_busy ? 0 : route_of(f);
    if (route) unhold(f, hold(f, route));
    struct mark *m = find_mark(f);
    if (m) {
        __atomic_store_n(&m->at, NULL, __ATOMIC_RELAXED);
        __atomic_store_n(&m->f, NULL, __ATOMIC_RELEASE);
    }
}

/* The library's destructor, before exit() flushes stdio. */
void logtap_stdio_at_exit(void) { catch_up_all(0); }

/* A forked child: what it inherited in the buffers is untapped as far as it is concerned. */
void logtap_stdio_after_fork_child(void) {
    int hi = __atomic_load_n(&marks_hi, __ATOMIC_ACQUIRE);
    for (int i = 0; i < hi; i++) __atomic_store_n(&marks[i].at, NULL, __ATOMIC_RELAXED);
}

/* ---- glibc's diagnostics: error(3), error_at_line(3), err(3), warn(3) ----
 * glibc prints them on stderr through internal calls the hooks do not see (coreutils reports
 * every failure with error()). When stderr is tapped they are printed here instead, with the
 * same public calls and the same bytes (glibc 2.36's misc/error.c and misc/err.c): the message
 * then goes through the stdio hooks. Otherwise the real function prints them: error() and
 * error_at_line() have no va_list variant, so the message is formatted here and passed as
 * "%s" (the rest -- program name, errno text, exit -- is glibc's own). A wide-oriented stderr
 * always gets the real function. */
extern unsigned int error_message_count;
extern int error_one_per_line;
extern void (*error_print_progname)(void);

static int diag_tapped(void) { return route_of(stderr) && !tls_busy && fwide(stderr, 0) <= 0; }

/* error_tail(): the message, errnum's text, the newline (the caller exits). */
static void error_tail(int errnum, const char *fmt, va_list ap) {
    vfprintf(stderr, fmt, ap);
    ++error_message_count;
    if (errnum) {
        char buf[1024];
        fprintf(stderr, ": %s", strerror_r(errnum, buf, sizeof buf));
    }
    fputs("\n", stderr);
    fflush(stderr);
}

static void error_common(int status, int errnum, int at_line, const char *file, unsigned int line,
                         const char *fmt, va_list ap) {
    int state;
    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &state);
    fflush(stdout);
    flockfile(stderr);
    if (error_print_progname)
        (*error_print_progname)();
    else
        fprintf(stderr, at_line ? "%s:" : "%s: ", program_invocation_name);
    if (at_line) fprintf(stderr, file != NULL ? "%s:%u: " : " ", file, line);
    error_tail(errnum, fmt, ap);
    funlockfile(stderr);
    pthread_setcancelstate(state, NULL);
    if (status) exit(status);
}

/* The untapped path: the message formatted here, printed by the real function. */
static void error_real(int status, int errnum, int at_line, const char *file, unsigned int line,
                       const char *fmt, va_list ap) {
    va_list again;
    va_copy(again, ap);
    char small[512];
    char *msg = small;
    size_t mapped = 0;
    int n = vsnprintf(small, sizeof small, fmt, ap);
    if (n >= (int)sizeof small) {
        mapped = ((size_t)n + 1 + 4095) & ~(size_t)4095;
        void *m = mmap(NULL, mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED) {
            mapped = 0; /* truncated rather than lost */
        } else {
            msg = m;
            vsnprintf(msg, mapped, fmt, again);
        }
    }
    va_end(again);
    if (n < 0) msg = (char *)fmt; /* glibc prints what it can; so do we */
    /* The real call gets status 0 and the exit is made here, after the mapping is released. */
    if (at_line) {
        if (real_error_at_line()) real_error_at_line()(0, errnum, file, line, "%s", msg);
    } else if (real_error()) {
        real_error()(0, errnum, "%s", msg);
    }
    if (mapped) munmap(msg, mapped);
    if (status) exit(status);
}

void error(int status, int errnum, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    if (diag_tapped())
        error_common(status, errnum, 0, NULL, 0, fmt, ap);
    else
        error_real(status, errnum, 0, NULL, 0, fmt, ap);
    va_end(ap);
}

void error_at_line(int status, int errnum, const char *file, unsigned int line, const char *fmt,
                   ...) {
    if (error_one_per_line) {
        /* glibc's rule, with its own memory of the last place (ours and glibc's never both
         * print: each call is handled by one of them). */
        static const char *old_file;
        static unsigned int old_line;
        if (old_line == line &&
            (file == old_file || (old_file != NULL && file != NULL && strcmp(old_file, file) == 0)))
            return;
        old_file = file;
        old_line = line;
    }
    va_list ap;
    va_start(ap, fmt);
    int saved = error_one_per_line;
    if (diag_tapped()) {
        error_common(status, errnum, 1, file, line, fmt, ap);
    } else {
        error_one_per_line = 0; /* already decided above */
        error_real(status, errnum, 1, file, line, fmt, ap);
        error_one_per_line = saved;
    }
    va_end(ap);
}

/* err.c: "<short name>: <message>[: <strerror(errno)>]\n". */
static void warn_common(int with_errno, const char *fmt, va_list ap) {
    int e = errno;
    if (!diag_tapped()) {
        errno = e;
        vwarn_fn real = with_errno ? real_vwarn() : (vwarn_fn)real_vwarnx();
        if (real) real(fmt, ap);
        return;
    }
    flockfile(stderr);
    if (fmt != NULL) {
        fprintf(stderr, "%s: ", program_invocation_short_name);
        vfprintf(stderr, fmt, ap);
        if (with_errno) {
            errno = e;
            fprintf(stderr, ": %m\n");
        } else {
            fputs("\n", stderr);
        }
    } else if (with_errno) {
        errno = e;
        fprintf(stderr, "%s: %m\n", program_invocation_short_name);
    } else {
        fprintf(stderr, "%s: \n", program_invocation_short_name);
    }
    funlockfile(stderr);
    errno = e;
}

void vwarn(const char *fmt, va_list ap) { warn_common(1, fmt, ap); }
void vwarnx(const char *fmt, va_list ap) { warn_common(0, fmt, ap); }
void warn(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    warn_common(1, fmt, ap);
    va_end(ap);
}
void warnx(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    warn_common(0, fmt, ap);
    va_end(ap);
}
void verr(int status, const char *fmt, va_list ap) {
    warn_common(1, fmt, ap);
    exit(status);
}
void verrx(int status, const char *fmt, va_list ap) {
    warn_common(0, fmt, ap);
    exit(status);
}
void err(int status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    warn_common(1, fmt, ap);
    va_end(ap);
    exit(status);
}
void errx(int status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    warn_common(0, fmt, ap);
    va_end(ap);
    exit(status);
}

/* ---- execl, execlp, execle: the argument list made into an array, as glibc does, and
 * passed to execv/execvp/execve, which the library hooks (interceptor/src/hooks/exec.rs: the
 * ring is handed to the agent before the image goes). ---- */
#include <limits.h>
#define EXECL_BODY(last_named, with_env)                                                    \
    va_list ap;                                                                             \
    long argc = 1;                                                                          \
    va_start(ap, last_named);                                                               \
    while (va_arg(ap, const char *) != NULL) {                                              \
        if (argc == INT_MAX) { va_end(ap); errno = E2BIG; return -1; }                      \
        argc++;                                                                             \
    }                                                                                       \
    va_end(ap);                                                                             \
    char *argv[argc + 1];                                                                   \
    char *const *envp = NULL;                                                               \
    va_start(ap, last_named);                                                               \
    argv[0] = (char *)arg;                                                                  \
    for (long i = 1; i <= argc; i++) argv[i] = va_arg(ap, char *);                         \
    if (with_env) envp = va_arg(ap, char *const *);                                         \
    va_end(ap);

int execl(const char *path, const char *arg, ...) {
    EXECL_BODY(arg, 0)
    (void)envp;
    return execv(path, argv);
}
int execlp(const char *file, const char *arg, ...) {
    EXECL_BODY(arg, 0)
    (void)envp;
    return execvp(file, argv);
}
int execle(const char *path, const char *arg, ...) {
    EXECL_BODY(arg, 1)
    return execve(path, argv, envp);
}

/* prctl: PR_SET_TSC can make rdtsc raise SIGSEGV; the library stops reading the TSC first
 * (before the call: a write tapped by another thread meanwhile must not fault), then makes the
 * real call with the caller's arguments. */
int prctl(int option, ...) {
    va_list ap;
    va_start(ap, option);
    unsigned long a2 = va_arg(ap, unsigned long), a3 = va_arg(ap, unsigned long);
    unsigned long a4 = va_arg(ap, unsigned long), a5 = va_arg(ap, unsigned long);
    va_end(ap);
    if (option == PR_SET_TSC) logtap_clock_tsc_off();
    int (*real)(int, unsigned long, unsigned long, unsigned long, unsigned long) = real_prctl();
    if (!real) return (int)syscall(SYS_prctl, option, a2, a3, a4, a5);
    return real(option, a2, a3, a4, a5);
}
