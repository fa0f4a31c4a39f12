//! The library's process-wide statics that are not plain atomics, behind safe wrappers whose
//! safety argument is written here once:
//!
//! - [`Published`] — a value written once by the one thread that claims it, then published and
//!   only read: the config, the HELLO metadata, the ring, each tap file's path.
//! - [`Claimed`] — a scratch area one thread at a time borrows without waiting: the HELLO
//!   encoder's buffer.
//! - [`AtomicState`] — a small typed state machine over an `AtomicU8` (declared with
//!   [`state_enum!`](crate::state_enum)): the connection's and the `file:` target's states, and
//!   a [`Published`] value's [`Fill`].
//!
//! None of them waits, locks or allocates (Contract 1): a claim that is taken is refused, and
//! the caller decides what to do (wait bounded, fall back, or skip).

use core::cell::UnsafeCell;
use core::marker::PhantomData;
use core::mem::MaybeUninit;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicBool, AtomicU8, Ordering};

/// A state enum whose variants are distinct bytes, one of them 0 (the initial state).
pub trait StateByte: Copy {
    /// The variant's byte.
    fn to_byte(self) -> u8;
    /// The variant of `b` (a byte no variant has reads as the 0 variant; [`AtomicState`] only
    /// ever holds bytes of variants).
    fn from_byte(b: u8) -> Self;
}

/// Declares a `#[repr(u8)]` state enum usable in an [`AtomicState`]. The variant written
/// `= 0` is the initial state.
#[macro_export]
macro_rules! state_enum {
    ($(#[$m:meta])* $vis:vis enum $name:ident { $($(#[$vm:meta])* $v:ident = $n:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        #[repr(u8)]
        $vis enum $name { $($(#[$vm])* $v = $n),+ }

        impl $crate::statics::StateByte for $name {
            #[inline]
            fn to_byte(self) -> u8 {
                self as u8
            }
            #[inline]
            fn from_byte(b: u8) -> Self {
                match b {
                    $($n => $name::$v,)+
                    _ => <$name as $crate::statics::StateByte>::from_byte(0),
                }
            }
        }
    };
}

/// A state of type `S` in an `AtomicU8`: loads, stores and compare-exchanges of whole states.
pub struct AtomicState<S> {
    byte: AtomicU8,
    _state: PhantomData<S>,
}

impl<S: StateByte> AtomicState<S> {
    /// In the state whose byte is 0.
    pub const fn new() -> Self {
        AtomicState {
            byte: AtomicU8::new(0),
            _state: PhantomData,
        }
    }

    /// The current state.
    #[inline]
    pub fn load(&self, order: Ordering) -> S {
        S::from_byte(self.byte.load(order))
    }

    /// Sets the state.
    #[inline]
    pub fn store(&self, s: S, order: Ordering) {
        self.byte.store(s.to_byte(), order);
    }

    /// Sets the state; returns the one before.
    #[inline]
    pub fn swap(&self, s: S, order: Ordering) -> S {
        S::from_byte(self.byte.swap(s.to_byte(), order))
    }

    /// Moves from `current` to `new` if the state is `current`; else returns the state found.
    #[inline]
    pub fn compare_exchange(
        &self,
        current: S,
        new: S,
        success: Ordering,
        failure: Ordering,
    ) -> Result<S, S> {
        self.byte
            .compare_exchange(current.to_byte(), new.to_byte(), success, failure)
            .map(S::from_byte)
            .map_err(S::from_byte)
    }
}

impl<S: StateByte> Default for AtomicState<S> {
    fn default() -> Self {
        Self::new()
    }
}

crate::state_enum! {
    /// Where a [`Published`] value is.
    pub enum Fill {
        /// Not written; the next [`Published::fill`] may claim it.
        Empty = 0,
        /// One thread is writing it.
        Filling = 1,
        /// Written and published: only read from now on.
        Ready = 2,
        /// Writing it failed for good; it stays unwritten.
        Failed = 3,
    }
}

/// Why [`Published::fill`] did not give a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused<E> {
    /// It was not empty: the state it was in (`Filling`, `Ready` or `Failed`).
    Busy(Fill),
    /// This thread claimed it and `make` failed with this error.
    Failed(E),
}

/// A value written once, by the thread that claims it, and then only read.
///
/// Safety argument (for the `unsafe impl Sync` and every `unsafe` block below): the value is
/// written only by the one thread whose compare-exchange moved the state from `Empty` to
/// `Filling`, and only before that thread publishes `Ready` with Release; a reference to it is
/// handed out only after an Acquire load saw `Ready`, so the write happens-before every read,
/// and after `Ready` it is never written again. The one exception, [`Published::reset`], is
/// `unsafe` and for a process with one thread.
pub struct Published<T> {
    state: AtomicState<Fill>,
    value: UnsafeCell<MaybeUninit<T>>,
}

// SAFETY: see the type's safety argument: one writer (the claimant, which may be any thread,
// hence `Send`), then shared reads only (hence `Sync`).
unsafe impl<T: Send + Sync> Sync for Published<T> {}

impl<T> Published<T> {
    /// Empty.
    pub const fn new() -> Self {
        Published {
            state: AtomicState::new(),
            value: UnsafeCell::new(MaybeUninit::uninit()),
        }
    }

    /// The value, once published.
    #[inline]
    pub fn get(&self) -> Option<&T> {
        if self.state.load(Ordering::Acquire) == Fill::Ready {
            // SAFETY: `Ready` seen with Acquire: written and never written again (see above).
            Some(unsafe { (*self.value.get()).assume_init_ref() })
        } else {
            None
        }
    }

    /// Where the value is now.
    #[inline]
    pub fn state(&self) -> Fill {
        self.state.load(Ordering::Acquire)
    }

    /// If it is empty, claims it and publishes what `make` returns. On an error, `make` says
    /// which state to leave it in: `Empty` (a later call may try again) or `Failed`.
    pub fn fill<E>(&self, make: impl FnOnce() -> Result<T, (Fill, E)>) -> Result<&T, Refused<E>> {
        if let Err(found) = self.state.compare_exchange(
            Fill::Empty,
            Fill::Filling,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            return Err(Refused::Busy(found));
        }
        match make() {
            Ok(v) => {
                // SAFETY: this thread moved Empty → Filling: it alone writes, nobody reads
                // before `Ready` (see above).
                let value = unsafe { (*self.value.get()).write(v) };
                self.state.store(Fill::Ready, Ordering::Release);
                Ok(value)
            }
            Err((after, e)) => {
                let after = if after == Fill::Failed {
                    Fill::Failed
                } else {
                    Fill::Empty
                };
                self.state.store(after, Ordering::Release);
                Err(Refused::Failed(e))
            }
        }
    }

    /// Drops the value (if any) and empties it, so that it can be filled again.
    ///
    /// # Safety
    /// No reference obtained from [`get`](Self::get) or [`fill`](Self::fill) may be used
    /// afterwards, and no other thread may call any method meanwhile: for a forked child,
    /// which has a single thread, outside any use of the value.
    pub unsafe fn reset(&self) {
        if self.state.swap(Fill::Empty, Ordering::AcqRel) == Fill::Ready {
            // SAFETY: it was `Ready` (initialised); the caller guarantees that no reference
            // is used any more and that no other thread races this drop.
            unsafe { (*self.value.get()).assume_init_drop() };
        }
    }
}

impl<T> Default for Published<T> {
    fn default() -> Self {
        Self::new()
    }
}

/// A value one thread at a time borrows mutably, without waiting: [`Claimed::try_claim`]
/// fails while another holds it.
///
/// Safety argument: `busy` moves false → true by a compare-exchange (Acquire) in
/// [`try_claim`](Self::try_claim), which alone hands out a [`Claim`]; the claim's drop moves it
/// back with Release. So at most one `&mut T` exists at a time, and each holder's writes
/// happen-before the next holder's reads.
pub struct Claimed<T> {
    busy: AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: see the type's safety argument: exclusive access, one thread at a time.
unsafe impl<T: Send> Sync for Claimed<T> {}

impl<T> Claimed<T> {
    /// Free, holding `value`.
    pub const fn new(value: T) -> Self {
        Claimed {
            busy: AtomicBool::new(false),
            value: UnsafeCell::new(value),
        }
    }

    /// The value for this thread alone, or `None` while another holds it (never waits).
    pub fn try_claim(&self) -> Option<Claim<'_, T>> {
        self.busy
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .ok()
            .map(|_| Claim { cell: self })
    }
}

/// Exclusive use of a [`Claimed`] value until dropped.
pub struct Claim<'a, T> {
    cell: &'a Claimed<T>,
}

impl<T> Deref for Claim<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: this claim is the only one (see `Claimed`).
        unsafe { &*self.cell.value.get() }
    }
}

impl<T> DerefMut for Claim<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: this claim is the only one (see `Claimed`), and `&mut self` is unique.
        unsafe { &mut *self.cell.value.get() }
    }
}

impl<T> Drop for Claim<'_, T> {
    fn drop(&mut self) {
        self.cell.busy.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::state_enum! {
        enum Light {
            Off = 0,
            On = 1,
        }
    }

    #[test]
    fn state_moves_by_compare_exchange() {
        let s: AtomicState<Light> = AtomicState::new();
        assert_eq!(s.load(Ordering::Relaxed), Light::Off);
        assert_eq!(
            s.compare_exchange(Light::Off, Light::On, Ordering::AcqRel, Ordering::Relaxed),
            Ok(Light::Off)
        );
        assert_eq!(
            s.compare_exchange(Light::Off, Light::On, Ordering::AcqRel, Ordering::Relaxed),
            Err(Light::On)
        );
        assert_eq!(s.swap(Light::Off, Ordering::Relaxed), Light::On);
    }

    #[test]
    fn published_is_filled_once_and_failure_can_be_retried() {
        let p: Published<u32> = Published::new();
        assert_eq!(p.get(), None);
        assert_eq!(
            p.fill(|| Err((Fill::Empty, "later"))),
            Err(Refused::Failed("later"))
        );
        assert_eq!(p.state(), Fill::Empty);
        assert_eq!(p.fill(|| Ok::<_, (Fill, ())>(7)), Ok(&7));
        assert_eq!(
            p.fill(|| Ok::<_, (Fill, ())>(8)),
            Err(Refused::Busy(Fill::Ready))
        );
        assert_eq!(p.get(), Some(&7), "the first value stays");
        // SAFETY: a test with one thread; no reference is used after the reset.
        unsafe { p.reset() };
        assert_eq!(p.get(), None);
        assert_eq!(p.fill(|| Err((Fill::Failed, ()))), Err(Refused::Failed(())));
        assert_eq!(
            p.fill(|| Ok::<_, (Fill, ())>(9)),
            Err(Refused::Busy(Fill::Failed))
        );
    }

    #[test]
    fn a_claim_is_exclusive_until_dropped() {
        let c = Claimed::new([0u8; 4]);
        let mut first = c.try_claim().unwrap();
        first[0] = 1;
        assert!(
            c.try_claim().is_none(),
            "a second claim while the first is held"
        );
        drop(first);
        assert_eq!(c.try_claim().unwrap()[0], 1);
    }
}
