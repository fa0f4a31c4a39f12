//! Record timestamps: `CLOCK_REALTIME`, read for the cost of one `rdtsc`.
//!
//! Every tapped write is stamped with the wall-clock time (Contract 2's `time_ns`). Through the
//! vDSO, `clock_gettime(CLOCK_REALTIME)` costs ≈ 21 ns on the machines we measure, most of it the
//! *ordered* TSC read the kernel needs (`lfence; rdtsc`), which also waits for the hook's
//! preceding stores — a fifth of what tapping a write costs. A plain `rdtsc` costs about half.
//!
//! So, when the kernel itself keeps time with the TSC (clocksource `tsc`: the kernel found it
//! invariant and synchronised across CPUs), [`record_time_ns`] converts a plain `rdtsc` with a
//! calibration taken from `CLOCK_REALTIME`, and re-anchors it to `CLOCK_REALTIME` every
//! [`REFRESH_NS`] (1 ms): a clock step or an NTP frequency change shows up within a millisecond,
//! and between anchors the interpolation is off by well under a microsecond (the rate is
//! measured over the last interval). At an anchor the stamp never jumps back by less than
//! [`MAX_SLEW_NS`]: a small lag is slewed away over the next interval instead, so one thread's
//! stamps do not decrease; a larger difference (the clock was stepped) is followed at once.
//! Elsewhere (another clocksource — e.g. `kvm-clock`, `xen` — another architecture, a process
//! that made `rdtsc` fault with `PR_SET_TSC`, or `LLT_CLOCK=realtime`) every stamp is a
//! `clock_gettime` call, as before. When `rdtsc` faults (`PR_SET_TSC` with `PR_TSC_SIGSEGV`,
//! inherited at load or set later by the program through `prctl`, which the C shim hooks), the
//! vDSO's `clock_gettime` would fault too (it reads the TSC in user mode): the library then
//! reads the clock with the `clock_gettime` system call and never executes `rdtsc`. (Only a
//! program that sets the flag with a raw `syscall(SYS_prctl, …)` goes unnoticed.)
//!
//! Contract 1: no lock (the calibration is a seqlock: readers never wait; a writer that finds it
//! taken, or a reader that finds it changing, reads `CLOCK_REALTIME` directly), no allocation,
//! no system call on the fast path, async-signal-safe (a signal handler interrupting a
//! refresh on its own thread sees the odd sequence and reads the clock directly).

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering, fence};

use crate::sys;

/// Re-anchor to `CLOCK_REALTIME` this often.
pub const REFRESH_NS: u64 = 1_000_000;
/// A stamp behind the interpolated time by less than this at an anchor is slewed, not stepped.
pub const MAX_SLEW_NS: u64 = 100_000;
/// A (TSC, clock) sample whose two TSC reads are further apart than this (in ns) was
/// interrupted (preemption, a signal): it is not used to calibrate.
const MAX_SAMPLE_SPREAD_NS: u64 = 2_000;
/// Rates outside 0.05–20 ns per tick (20 GHz–50 MHz) are not a TSC's: never used.
const MIN_MULT: u64 = 1 << 32 >> 5;
const MAX_MULT: u64 = 20 << 32;

/// Whether stamps come from the TSC (decided at load).
static TSC: AtomicBool = AtomicBool::new(false);

/// The seqlock: odd while a refresh rewrites the calibration.
static SEQ: AtomicU64 = AtomicU64::new(0);
/// Calibration: `time = NS0 + ((tsc - TSC0) * MULT) >> 32`, valid while
/// `tsc - TSC0 < LIMIT` (MULT = 0: not calibrated yet).
static TSC0: AtomicU64 = AtomicU64::new(0);
static NS0: AtomicU64 = AtomicU64::new(0);
static MULT: AtomicU64 = AtomicU64::new(0);
static LIMIT: AtomicU64 = AtomicU64::new(0);
/// The last accepted raw sample (only touched by the refresher holding the seqlock).
static SAMPLE_TSC: AtomicU64 = AtomicU64::new(0);
static SAMPLE_NS: AtomicU64 = AtomicU64::new(0);

/// Decides the time source (constructor). `allow_tsc` is false for `LLT_CLOCK=realtime`.
pub fn init(allow_tsc: bool) {
    let use_tsc = allow_tsc && tsc_usable();
    TSC.store(use_tsc, Ordering::Relaxed);
    if use_tsc && let Ok((t, n)) = sample(None) {
        SAMPLE_TSC.store(t, Ordering::Relaxed);
        SAMPLE_NS.store(n, Ordering::Relaxed);
    }
}

/// Switches the library's clock reads to the system call if `rdtsc` faults in this process
/// (constructor, before the first clock read).
pub fn detect_faulting_rdtsc() {
    if rdtsc_faults() {
        sys::use_raw_clock();
    }
}

/// Whether stamps are interpolated from the TSC (for the debug line and tests).
pub fn uses_tsc() -> bool {
    TSC.load(Ordering::Relaxed)
}

/// Stops reading the TSC (the C shim's `prctl` hook calls this before `PR_SET_TSC`, which can
/// make `rdtsc` fault): every stamp is a `clock_gettime` call from now on.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub extern "C" fn logtap_clock_tsc_off() {
    TSC.store(false, Ordering::SeqCst);
    sys::use_raw_clock();
}

/// In a forked child: a refresh some other thread of the parent was making is void (that
/// thread does not exist here), so the seqlock is released.
pub fn after_fork_child() {
    let s = SEQ.load(Ordering::Relaxed);
    if s & 1 != 0 {
        MULT.store(0, Ordering::Relaxed);
        SEQ.store(s.wrapping_add(1), Ordering::Release);
    }
}

/// `CLOCK_REALTIME` now, in ns since the epoch (0 if unavailable). Preserves errno.
#[inline]
pub fn record_time_ns() -> u64 {
    if !TSC.load(Ordering::Relaxed) {
        return sys::now_ns();
    }
    let s = SEQ.load(Ordering::Acquire);
    let tsc0 = TSC0.load(Ordering::Relaxed);
    let ns0 = NS0.load(Ordering::Relaxed);
    let mult = MULT.load(Ordering::Relaxed);
    let limit = LIMIT.load(Ordering::Relaxed);
    fence(Ordering::Acquire);
    let unchanged = SEQ.load(Ordering::Relaxed) == s;
    let t = rdtsc();
    let d = t.wrapping_sub(tsc0);
    if s & 1 == 0 && unchanged && d < limit {
        return ns0.wrapping_add(scale(d, mult));
    }
    refresh()
}

/// `d` ticks in ns at `mult` (ns per tick, 32.32 fixed point).
#[inline]
fn scale(d: u64, mult: u64) -> u64 {
    // A u64 times a u64 fits in a u128; the result is ≥ 2^64 only for absurd inputs.
    let ns = u128::from(d)
        .wrapping_mul(u128::from(mult))
        .wrapping_shr(32);
    u64::try_from(ns).unwrap_or(u64::MAX)
}

/// `a / b` in 32.32 fixed point (0 when `b` is 0; saturated).
fn ratio(a: u64, b: u64) -> u64 {
    let q = (u128::from(a).wrapping_shl(32))
        .checked_div(u128::from(b))
        .unwrap_or(0);
    u64::try_from(q).unwrap_or(u64::MAX)
}

/// Takes a new anchor (or, if another thread is taking one, just reads the clock).
#[cold]
#[inline(never)]
fn refresh() -> u64 {
    let old_mult = MULT.load(Ordering::Relaxed);
    let (t, n) = match sample(Some(old_mult)) {
        Ok(pair) => pair,
        Err(clock) => return clock,
    };
    let s = SEQ.load(Ordering::Relaxed);
    if s & 1 != 0
        || SEQ
            .compare_exchange(s, s.wrapping_add(1), Ordering::Acquire, Ordering::Relaxed)
            .is_err()
    {
        return n;
    }
    // Seqlock writer: the odd sequence is visible before any calibration store.
    fence(Ordering::Release);
    let value = recalibrate(t, n, old_mult);
    SEQ.store(s.wrapping_add(2), Ordering::Release);
    value
}

/// Computes and stores the calibration anchored at the sample `(t, n)`; returns the stamp for
/// this instant. Called with the seqlock held.
fn recalibrate(t: u64, n: u64, old_mult: u64) -> u64 {
    let (t_prev, n_prev) = (
        SAMPLE_TSC.load(Ordering::Relaxed),
        SAMPLE_NS.load(Ordering::Relaxed),
    );
    let ticks = t.wrapping_sub(t_prev);
    let elapsed = n.wrapping_sub(n_prev);
    // Too soon after the previous sample to measure the rate well (first calls after load):
    // keep the old calibration and sample, use the clock as it is.
    if n <= n_prev || elapsed < REFRESH_NS / 2 || ticks == 0 || ticks > i64::MAX as u64 {
        if n < n_prev || ticks > i64::MAX as u64 {
            // The clock went back (stepped) or the TSC did: start measuring afresh.
            SAMPLE_TSC.store(t, Ordering::Relaxed);
            SAMPLE_NS.store(n, Ordering::Relaxed);
        }
        return n;
    }
    SAMPLE_TSC.store(t, Ordering::Relaxed);
    SAMPLE_NS.store(n, Ordering::Relaxed);
    let measured = ratio(elapsed, ticks);
    if !(MIN_MULT..=MAX_MULT).contains(&measured) {
        MULT.store(0, Ordering::Relaxed);
        LIMIT.store(0, Ordering::Relaxed);
        return n;
    }
    let interval_ticks = ratio(REFRESH_NS, measured);
    // The latest stamp the previous calibration can have given (it is only used up to LIMIT
    // ticks past its anchor): if the new anchor is a little behind it, start from there and
    // run slower for one interval, so that stamps never decrease.
    let mut base = n;
    let mut mult = measured;
    if old_mult != 0 {
        let used = t
            .wrapping_sub(TSC0.load(Ordering::Relaxed))
            .min(LIMIT.load(Ordering::Relaxed));
        let issued = NS0
            .load(Ordering::Relaxed)
            .wrapping_add(scale(used, old_mult));
        let ahead = issued.saturating_sub(n);
        if ahead > 0 && ahead < MAX_SLEW_NS {
            base = issued;
            let lag = ratio(ahead, interval_ticks);
            mult = measured.saturating_sub(lag).max(measured / 2);
        }
    }
    TSC0.store(t, Ordering::Relaxed);
    NS0.store(base, Ordering::Relaxed);
    MULT.store(mult, Ordering::Relaxed);
    LIMIT.store(interval_ticks, Ordering::Relaxed);
    base
}

/// One `(tsc, CLOCK_REALTIME ns)` pair, the TSC taken halfway between two reads around the
/// clock read; `Err(clock)` — the clock alone, 0 if it failed — when the pair cannot calibrate:
/// the clock failed or the reads were too far apart (at `mult` ns per tick, or a generous tick
/// count before the rate is known).
fn sample(mult: Option<u64>) -> Result<(u64, u64), u64> {
    let a = rdtsc();
    let n = sys::now_ns();
    let b = rdtsc();
    let spread = b.wrapping_sub(a);
    let max_ticks = match mult {
        Some(m) if m != 0 => ratio(MAX_SAMPLE_SPREAD_NS, m),
        _ => 20_000,
    };
    if n == 0 || spread > max_ticks {
        return Err(n);
    }
    Ok((a.wrapping_add(spread / 2), n))
}

/// Whether `rdtsc` raises SIGSEGV in this process (`PR_SET_TSC`, inherited from a parent:
/// record/replay tools, sandboxes) — or cannot be asked.
fn rdtsc_faults() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        let mut mode: libc::c_int = 0;
        // SAFETY: PR_GET_TSC writes one int through the pointer we pass. A raw system call:
        // the library's own `prctl` hook is for the program's calls.
        let r = unsafe { libc::syscall(libc::SYS_prctl, libc::PR_GET_TSC, &raw mut mode) };
        r != 0 || mode != libc::PR_TSC_ENABLE
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether a plain `rdtsc` gives the kernel's own time base here.
fn tsc_usable() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        // Set by `detect_faulting_rdtsc` (constructor, before `init`) or the `prctl` hook.
        if sys::raw_clock() {
            return false;
        }
        let mut buf = [0u8; 32];
        let n = sys::read_file(
            b"/sys/devices/system/clocksource/clocksource0/current_clocksource\0",
            &mut buf,
        );
        buf.get(..n).map(<[u8]>::trim_ascii) == Some(b"tsc".as_slice())
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

#[inline]
fn rdtsc() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: rdtsc has no memory effects; `init` only enables this path where the kernel
        // allows it (PR_GET_TSC) and keeps time with the TSC.
        unsafe { core::arch::x86_64::_rdtsc() }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_is_fixed_point_ns_per_tick() {
        // 0.5 ns per tick (2 GHz).
        assert_eq!(scale(2_000_000, 1 << 31), 1_000_000);
        assert_eq!(scale(0, 1 << 31), 0);
        assert_eq!(scale(u64::MAX, 0), 0);
    }

    /// The calibration is process-wide: tests that set it run one at a time.
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

    const ONE_NS: u64 = 1 << 32; // 1 ns per tick
    const N0: u64 = 1_700_000_000_000_000_000;

    /// Anchored at tick 1,000 = N0, 1 ns per tick, for 1 ms; the last sample is the anchor.
    fn anchor() {
        for (a, v) in [
            (&TSC0, 1000),
            (&NS0, N0),
            (&MULT, ONE_NS),
            (&LIMIT, 1_000_000),
            (&SAMPLE_TSC, 1000),
            (&SAMPLE_NS, N0),
        ] {
            a.store(v, Ordering::Relaxed);
        }
    }

    fn load(a: &AtomicU64) -> u64 {
        a.load(Ordering::Relaxed)
    }

    #[test]
    fn recalibration_slews_small_lags_and_follows_clock_steps() {
        let _serial = SERIAL.lock();
        // The clock agrees one interval later: new anchor on the clock, same rate.
        anchor();
        assert_eq!(
            recalibrate(1_001_000, N0 + 1_000_000, ONE_NS),
            N0 + 1_000_000
        );
        assert_eq!(
            (load(&TSC0), load(&NS0), load(&MULT), load(&LIMIT)),
            (1_001_000, N0 + 1_000_000, ONE_NS, 1_000_000)
        );

        // The clock is 50 ns behind the stamps already given: start from the last stamp
        // given, and run slower for one interval, so that stamps never go back.
        anchor();
        let base = recalibrate(1_001_000, N0 + 1_000_000 - 50, ONE_NS);
        assert_eq!(base, N0 + 1_000_000);
        let slow = load(&MULT);
        assert!(slow < ONE_NS && slow > ONE_NS - ONE_NS / 10_000, "{slow}");
        // After one more interval the slewed stamps meet the clock again (within 2 ns).
        let at_end = base + scale(load(&LIMIT), slow);
        // The clock runs at the rate measured: one interval is 1 ms of it.
        let clock_at_end = N0 + 1_000_000 - 50 + 1_000_000;
        assert!(
            at_end.abs_diff(clock_at_end) <= 2,
            "{at_end} vs {clock_at_end}"
        );

        // The clock was stepped back by a second: followed at once; the rate is measured afresh
        // from this sample, and the anchor is not extended, so stamps keep coming from the
        // clock until a new rate is known.
        anchor();
        let back = N0 + 1_000_000 - 1_000_000_000;
        assert_eq!(recalibrate(1_001_000, back, ONE_NS), back);
        assert_eq!((load(&SAMPLE_TSC), load(&SAMPLE_NS)), (1_001_000, back));
        assert_eq!(load(&TSC0), 1000, "anchor not extended");

        // Stepped forward by a second: the measured rate is no TSC's, the fast path is off
        // until the rate is measured again; the stamp is the clock's.
        anchor();
        let ahead = N0 + 1_000_000 + 1_000_000_000;
        assert_eq!(recalibrate(1_001_000, ahead, ONE_NS), ahead);
        assert_eq!((load(&MULT), load(&LIMIT)), (0, 0));

        // Too soon after the last sample to measure a rate (first calls after load): the clock.
        anchor();
        assert_eq!(recalibrate(1_100, N0 + 100, ONE_NS), N0 + 100);
        assert_eq!(load(&TSC0), 1000);
    }

    #[test]
    fn stamps_follow_the_realtime_clock_and_never_decrease() {
        let _serial = SERIAL.lock();
        // Start from a clean state (the other test leaves a synthetic calibration behind).
        MULT.store(0, Ordering::Relaxed);
        LIMIT.store(0, Ordering::Relaxed);
        init(true);
        let mut last = 0u64;
        let start = std::time::Instant::now();
        let mut worst = 0i128;
        while start.elapsed() < std::time::Duration::from_millis(30) {
            let before = sys::now_ns();
            let t = record_time_ns();
            let after = sys::now_ns();
            assert!(t >= last, "stamp went back: {t} after {last}");
            last = t;
            let off = if t < before {
                i128::from(before) - i128::from(t)
            } else if t > after {
                i128::from(t) - i128::from(after)
            } else {
                0
            };
            worst = worst.max(off);
        }
        // Interpolation error plus slewing stays far below a millisecond.
        assert!(worst < 200_000, "stamps off CLOCK_REALTIME by {worst} ns");
    }
}
