//! SIGHUP, SIGTERM and SIGINT, taken synchronously by one control-plane thread.
//!
//! Why `sigtimedwait` and no handler: the three signals are blocked before boot starts any
//! thread, so every thread (shards, poller, admin) inherits the mask and none is ever
//! interrupted; the kernel keeps a signal pending on the process until the lifecycle thread asks
//! for it with `sigtimedwait`, which also gives that thread its timed wake-ups (watchdog, drain
//! deadline). There is no async-signal-safe code to get right, no self-pipe, and no crate
//! beyond `libc` (signal-hook would install handlers and a pipe to do the same thing).

use std::io;
use std::time::Duration;

/// A signal the lifecycle thread acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Hup,
    Term,
    Int,
}

impl Signal {
    pub fn name(self) -> &'static str {
        match self {
            Signal::Hup => "SIGHUP",
            Signal::Term => "SIGTERM",
            Signal::Int => "SIGINT",
        }
    }
}

/// The blocked set; only [`Signals::wait`] takes them.
pub struct Signals {
    set: libc::sigset_t,
}

impl Signals {
    /// Blocks SIGHUP, SIGTERM and SIGINT on the calling thread. Call it before any other
    /// thread exists, so they all inherit the mask.
    pub fn block() -> io::Result<Signals> {
        // SAFETY: an all-zero sigset_t is a valid value to hand to sigemptyset, which
        // initialises it.
        let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: `set` is a valid sigset_t owned here; the signal numbers are valid.
        unsafe {
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGHUP);
            libc::sigaddset(&mut set, libc::SIGTERM);
            libc::sigaddset(&mut set, libc::SIGINT);
        }
        // SAFETY: `set` is initialised; a null old-set pointer is allowed.
        let r = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
        if r != 0 {
            return Err(io::Error::from_raw_os_error(r));
        }
        Ok(Signals { set })
    }

    /// Waits up to `timeout` for one of the signals; `None` when the time is up first.
    pub fn wait(&self, timeout: Duration) -> Option<Signal> {
        let ts = libc::timespec {
            tv_sec: timeout.as_secs().min(i32::MAX as u64) as libc::time_t,
            tv_nsec: timeout.subsec_nanos() as libc::c_long,
        };
        // SAFETY: `set` was initialised in `block`; a null siginfo pointer is allowed and `ts`
        // is a valid timespec.
        let r = unsafe { libc::sigtimedwait(&self.set, std::ptr::null_mut(), &ts) };
        match r {
            libc::SIGHUP => Some(Signal::Hup),
            libc::SIGTERM => Some(Signal::Term),
            libc::SIGINT => Some(Signal::Int),
            // EAGAIN (timeout) or EINTR (another signal, e.g. a debugger's): the caller's loop
            // recomputes its deadlines and waits again.
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocked_signals_are_taken_by_wait() {
        // Blocks on this test thread only; raise(3) directs the signal at this thread.
        let s = Signals::block().expect("block");
        assert_eq!(s.wait(Duration::from_millis(1)), None);
        for (sig, want) in [
            (libc::SIGHUP, Signal::Hup),
            (libc::SIGTERM, Signal::Term),
            (libc::SIGINT, Signal::Int),
        ] {
            // SAFETY: the signal is blocked on this thread, so raising it only makes it
            // pending; nothing runs asynchronously.
            assert_eq!(unsafe { libc::raise(sig) }, 0);
            assert_eq!(s.wait(Duration::from_secs(5)), Some(want));
        }
        assert_eq!(s.wait(Duration::from_millis(1)), None);
        assert_eq!(Signal::Term.name(), "SIGTERM");
    }
}
