//! Panic containment for third-party protocol libraries (str0m): `run` marks the thread while the
//! library runs, and the process's panic hook (`server::stop_on_panic`, which otherwise ends the
//! process on any panic) lets a panic raised in there unwind back to `run`, so a hostile offer or
//! datagram ends only the session that fed it. Our own code is never run in here: a panic of ours
//! is a bug that may have left shared state half updated, and it still stops the process.

use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};

thread_local! {
    static DEPTH: Cell<u32> = const { Cell::new(0) };
}

/// Runs `f` (a call into a third-party library whose state is dropped on failure); `Err` carries
/// the panic's message.
pub fn run<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    DEPTH.with(|d| d.set(d.get() + 1));
    let result = catch_unwind(AssertUnwindSafe(f));
    DEPTH.with(|d| d.set(d.get().saturating_sub(1)));
    result.map_err(|e| {
        e.downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| e.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".into())
    })
}

/// True while this thread is inside `run`.
pub fn is_contained() -> bool {
    DEPTH.with(|d| d.get() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_inside_run_comes_back_as_an_error_and_the_mark_is_cleared() {
        assert!(!is_contained());
        assert_eq!(run(|| 7), Ok(7));
        let e = run(|| -> u8 {
            assert!(is_contained());
            panic!("library bug")
        });
        assert_eq!(e, Err("library bug".to_string()));
        assert!(!is_contained());
        let nested = run(|| run(is_contained).unwrap() && is_contained());
        assert_eq!(nested, Ok(true));
        assert!(!is_contained());
    }
}
