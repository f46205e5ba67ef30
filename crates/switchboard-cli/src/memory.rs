//! The allocator `switchboard` runs on, and the memory a server gives back when it goes quiet.
//!
//! With the `jemalloc` feature the allocator is jemalloc: a server's memory is mostly many small
//! blocks per connection, which it pads less than glibc's malloc. jemalloc hands the pages of
//! freed blocks back to the system only as allocation goes on (10 s after they were freed),
//! so a server that goes quiet after a burst (a storm of handshakes, connections come and
//! gone) keeps them: 1.3 MB after opening 10,000 connections, 130 bytes of RSS for each one
//! that stays. [`give_back_when_quiet`] returns them once the process has been quiet for a
//! moment. A busy server, which reuses the pages it frees, never pays for it; the alternative,
//! jemalloc's background thread purging on a timer, shares the server's cores and cost
//! pipelined echo up to a fifth more CPU per message.

use std::time::Duration;

#[cfg(all(feature = "jemalloc", not(target_env = "msvc")))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// How often the process's CPU time is read.
const TICK: Duration = Duration::from_millis(250);

/// Below this share of one core over a tick, the process is quiet.
const QUIET: f64 = 0.02;

/// Whether to give freed pages back, tick after tick: once per quiet spell, after a busy tick.
#[derive(Debug, Default)]
struct Quiet {
    busy_since_given: bool,
}

impl Quiet {
    /// A tick in which the process used `cpu` of one core: whether to give pages back now.
    fn tick(&mut self, cpu: f64) -> bool {
        if cpu >= QUIET {
            self.busy_since_given = true;
            return false;
        }
        std::mem::take(&mut self.busy_since_given)
    }
}

/// Gives freed memory back to the system each time the process goes quiet after being busy,
/// for as long as the runtime runs. Nothing to do without jemalloc (glibc's malloc trims by
/// itself), or where the process's CPU time cannot be read.
pub(crate) fn give_back_when_quiet() {
    if !cfg!(all(feature = "jemalloc", not(target_env = "msvc"))) {
        return;
    }
    let Ok(mut last) = crate::bench::probe::cpu_seconds("self") else {
        return;
    };
    tokio::spawn(async move {
        let mut quiet = Quiet::default();
        let mut ticks = tokio::time::interval(TICK);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            let Ok(now) = crate::bench::probe::cpu_seconds("self") else {
                return;
            };
            let used = (now - last) / TICK.as_secs_f64();
            last = now;
            if quiet.tick(used) {
                purge();
            }
        }
    });
}

/// Returns every arena's unused dirty pages to the system.
#[cfg(all(feature = "jemalloc", not(target_env = "msvc")))]
fn purge() {
    // MALLCTL_ARENAS_ALL: every arena at once.
    let name = c"arena.4096.purge";
    // SAFETY: `arena.<i>.purge` reads and writes nothing; the name is NUL-terminated.
    let failed = unsafe {
        tikv_jemalloc_sys::mallctl(
            name.as_ptr(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            0,
        )
    };
    if failed != 0 {
        tracing::debug!(error = failed, "jemalloc did not purge");
    }
}

#[cfg(not(all(feature = "jemalloc", not(target_env = "msvc"))))]
fn purge() {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_go_back_once_per_quiet_spell_after_busy_ticks() {
        let mut quiet = Quiet::default();
        // Quiet from the start: nothing was freed since the last time.
        assert!(!quiet.tick(0.0));
        assert!(!quiet.tick(0.9));
        assert!(!quiet.tick(0.5));
        assert!(quiet.tick(0.01));
        assert!(!quiet.tick(0.0));
        assert!(!quiet.tick(0.019));
        assert!(!quiet.tick(QUIET));
        assert!(quiet.tick(0.0));
    }
}
