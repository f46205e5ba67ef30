//! The dashboard's sessions: the password checked in constant time, wrong guesses
//! rate-limited, and the sessions of those who logged in, held in memory until they expire or
//! log out (a restart logs everyone out).

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use sha2::{Digest, Sha256};
use switchboard::TokenBucket;
use tokio::time::Instant;

/// How long a session lasts from its login.
pub(super) const SESSION_TTL: Duration = Duration::from_secs(8 * 60 * 60);

/// Sessions held at most: a login past it ends the one closest to expiring.
const MAX_SESSIONS: usize = 64;

/// Wrong passwords allowed at once, then one a second: a guesser gets about 86,000 a day
/// whichever address it comes from. While they are used up every login waits, the right
/// password included, or the limit would tell a guesser which guess was right.
const GUESS_BURST: u32 = 5;
const GUESS_RATE: f64 = 1.0;

/// One logged-in admin.
#[derive(Clone, Debug)]
pub(super) struct Session {
    /// The cookie's value: 128 random bits in hex.
    pub(super) id: String,
    /// What state-changing requests send in `X-CSRF-Token`: another 128 random bits.
    pub(super) csrf: String,
    /// What logs name the session by: a prefix of the id's SHA-256, which identifies it
    /// without handing over the cookie to whoever reads the logs.
    pub(super) tag: String,
    pub(super) expires: Instant,
}

/// What a login attempt gets.
#[derive(Debug)]
pub(super) enum Login {
    Welcome(Session),
    Wrong,
    /// Too many wrong passwords: try again after this.
    Throttled(Duration),
    /// The operating system gave no randomness for the ids.
    NoRandomness,
}

/// The password and the live sessions.
pub(super) struct Sessions {
    /// The password's SHA-256: compared digest to digest, every byte every time.
    password: [u8; 32],
    inner: Mutex<Inner>,
}

struct Inner {
    live: HashMap<String, Session>,
    guesses: TokenBucket,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sessions({})", self.lock().live.len())
    }
}

impl Sessions {
    pub(super) fn new(password: &str) -> Self {
        Self {
            password: Sha256::digest(password.as_bytes()).into(),
            inner: Mutex::new(Inner {
                live: HashMap::new(),
                guesses: TokenBucket::new(GUESS_RATE, GUESS_BURST),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every update leaves the map whole: a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Checks `password`; the right one opens a session.
    pub(super) fn login(&self, password: &str) -> Login {
        let mut inner = self.lock();
        let wait = inner.guesses.wait();
        if !wait.is_zero() {
            return Login::Throttled(wait);
        }
        let digest: [u8; 32] = Sha256::digest(password.as_bytes()).into();
        if !same(&digest, &self.password) {
            inner.guesses.try_take();
            return Login::Wrong;
        }
        let (Some(id), Some(csrf)) = (random_id(), random_id()) else {
            return Login::NoRandomness;
        };
        let now = Instant::now();
        inner.live.retain(|_, session| session.expires > now);
        if inner.live.len() >= MAX_SESSIONS {
            let oldest = inner
                .live
                .values()
                .min_by_key(|session| session.expires)
                .map(|session| session.id.clone());
            if let Some(oldest) = oldest {
                inner.live.remove(&oldest);
            }
        }
        let tag = hex(&Sha256::digest(id.as_bytes())[..4]);
        let session = Session {
            id: id.clone(),
            csrf,
            tag,
            expires: now + SESSION_TTL,
        };
        inner.live.insert(id, session.clone());
        Login::Welcome(session)
    }

    /// The session whose cookie is `id`, while it lasts.
    pub(super) fn get(&self, id: &str) -> Option<Session> {
        let inner = self.lock();
        let session = inner.live.get(id)?;
        (session.expires > Instant::now()).then(|| session.clone())
    }

    /// Ends the session `id`.
    pub(super) fn logout(&self, id: &str) {
        self.lock().live.remove(id);
    }
}

/// Whether `a` and `b` are equal, in a time that depends on their lengths only.
pub(super) fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

/// 128 bits from the operating system, in hex.
fn random_id() -> Option<String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).ok()?;
    Some(hex(&bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_right_password_opens_a_session_until_logout() {
        let sessions = Sessions::new("hunter2");
        let Login::Welcome(session) = sessions.login("hunter2") else {
            panic!("the right password is welcome");
        };
        assert_eq!(session.id.len(), 32);
        assert_ne!(session.id, session.csrf);
        assert!(!session.id.contains(&session.tag));
        assert_eq!(sessions.get(&session.id).unwrap().csrf, session.csrf);
        assert!(sessions.get(&session.csrf).is_none());
        sessions.logout(&session.id);
        assert!(sessions.get(&session.id).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn wrong_passwords_are_throttled_and_then_everyone_waits() {
        let sessions = Sessions::new("hunter2");
        for guess in ["", "hunter", "hunter22", "HUNTER2", "x"] {
            assert!(matches!(sessions.login(guess), Login::Wrong), "{guess}");
        }
        assert!(matches!(sessions.login("nope"), Login::Throttled(_)));
        assert!(matches!(sessions.login("hunter2"), Login::Throttled(_)));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(matches!(sessions.login("hunter2"), Login::Welcome(_)));
    }

    #[tokio::test(start_paused = true)]
    async fn sessions_expire_and_the_oldest_makes_room() {
        let sessions = Sessions::new("pw");
        let login = || match sessions.login("pw") {
            Login::Welcome(session) => session,
            other => panic!("{other:?}"),
        };
        let first = login();
        tokio::time::advance(Duration::from_secs(1)).await;
        let kept: Vec<Session> = (1..MAX_SESSIONS).map(|_| login()).collect();
        assert!(sessions.get(&first.id).is_some());
        let newest = login();
        assert!(sessions.get(&first.id).is_none(), "the oldest made room");
        assert!(sessions.get(&kept[0].id).is_some());
        tokio::time::advance(SESSION_TTL).await;
        assert!(sessions.get(&newest.id).is_none(), "expired");
    }

    #[test]
    fn same_compares_whole_slices() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"ab"));
        assert!(same(b"", b""));
    }
}
