//! Keepalive and close-timeout deadlines on a virtual clock.

use std::time::{Duration, Instant};

use super::Pair;
use crate::{CloseCode, Config, Message, ProtocolError};

const IDLE: Duration = Duration::from_secs(30);
const PONG: Duration = Duration::from_secs(10);
const CLOSE: Duration = Duration::from_secs(5);

fn keepalive_pair() -> Pair {
    Pair::new(Config {
        idle_timeout: Some(IDLE),
        pong_timeout: PONG,
        close_timeout: CLOSE,
        ..Config::default()
    })
}

fn s(secs: u64) -> Duration {
    Duration::from_secs(secs)
}

#[test]
fn no_timer_runs_before_the_caller_gives_the_time() {
    let pair = keepalive_pair();
    assert_eq!(pair.server.poll_timeout(), None);
}

#[test]
fn a_silent_peer_is_pinged_and_a_pong_keeps_it_alive() {
    let t0 = Instant::now();
    let mut pair = keepalive_pair();
    pair.server.handle_timeout(t0);
    assert_eq!(pair.server.poll_timeout(), Some(t0 + IDLE));

    pair.server.handle_timeout(t0 + IDLE);
    let (to_client, _) = pair.drive().unwrap();
    assert_eq!(to_client, vec![Message::Ping(Default::default())]);
    assert_eq!(pair.server.poll_timeout(), Some(t0 + IDLE + PONG));

    // The client's automatic Pong arrived during drive(): the deadline re-arms, no failure.
    pair.server.handle_timeout(t0 + IDLE + PONG);
    assert_eq!(pair.server.poll_message(), None);
    assert!(!pair.server.is_closing());
    assert_eq!(pair.server.poll_timeout(), Some(t0 + IDLE + PONG + IDLE));
}

#[test]
fn input_postpones_the_ping() {
    let t0 = Instant::now();
    let mut pair = keepalive_pair();
    pair.server.handle_timeout(t0);
    pair.client.send(Message::text("still here")).unwrap();
    let (_, to_server) = pair.drive().unwrap();
    assert_eq!(to_server, vec![Message::text("still here")]);
    pair.server.handle_timeout(t0 + IDLE);
    assert_eq!(
        pair.server.poll_transmit(),
        None,
        "no ping after recent input"
    );
    assert_eq!(pair.server.poll_timeout(), Some(t0 + IDLE + IDLE));
}

#[test]
fn bytes_of_an_incomplete_frame_count_as_input() {
    let t0 = Instant::now();
    let mut pair = keepalive_pair();
    pair.server.handle_timeout(t0);
    // Two bytes of a masked frame header: nothing to deliver yet, but the peer is alive.
    pair.server.read_buffer().extend_from_slice(&[0x81, 0x85]);
    pair.server.commit_read(2);
    assert_eq!(pair.server.poll_message(), None);
    pair.server.handle_timeout(t0 + IDLE);
    assert_eq!(pair.server.poll_transmit(), None);
}

#[test]
fn a_peer_that_never_answers_fails_with_1011_then_the_close_is_abandoned() {
    let t0 = Instant::now();
    let mut pair = keepalive_pair();
    pair.server.handle_timeout(t0);
    pair.server.handle_timeout(t0 + IDLE);
    assert!(pair.server.poll_transmit().is_some(), "the ping");
    // The peer is gone: nothing comes back.
    pair.server.handle_timeout(t0 + IDLE + PONG);
    assert_eq!(
        pair.server.poll_message(),
        Some(Err(ProtocolError::KeepaliveTimeout))
    );
    assert_eq!(pair.server.poll_message(), None);
    assert!(pair.server.is_closed());
    let close = pair.server.poll_transmit().unwrap();
    assert_eq!(&close[..4], &[0x88, close[1], 0x03, 0xf3], "close 1011");

    // The close timeout starts at the next handle_timeout, which is due at once.
    let now = t0 + IDLE + PONG;
    assert_eq!(pair.server.poll_timeout(), Some(now));
    pair.server.handle_timeout(now);
    assert_eq!(pair.server.poll_timeout(), Some(now + CLOSE));
    pair.server.handle_timeout(now + CLOSE);
    assert!(pair.server.is_abandoned());
    assert_eq!(pair.server.poll_timeout(), None);
}

#[test]
fn an_unanswered_close_is_abandoned_after_the_close_timeout() {
    let t0 = Instant::now();
    let mut pair = keepalive_pair();
    pair.server.handle_timeout(t0);
    pair.server.close(CloseCode::GOING_AWAY, "bye").unwrap();
    assert_eq!(pair.server.poll_timeout(), Some(t0));
    pair.server.handle_timeout(t0 + s(1));
    assert_eq!(pair.server.poll_timeout(), Some(t0 + s(1) + CLOSE));
    pair.server.handle_timeout(t0 + s(3));
    assert!(!pair.server.is_abandoned());
    pair.server.handle_timeout(t0 + s(1) + CLOSE);
    assert!(pair.server.is_abandoned());
    assert_eq!(pair.server.buffered_amount(), 0, "queued output discarded");
    assert_eq!(pair.server.poll_transmit(), None);
}

#[test]
fn without_an_idle_timeout_only_the_close_timeout_runs() {
    let t0 = Instant::now();
    let mut pair = Pair::new(Config::default());
    pair.server.handle_timeout(t0);
    assert_eq!(pair.server.poll_timeout(), None);
    pair.server.handle_timeout(t0 + s(3600));
    assert_eq!(pair.server.poll_transmit(), None);
    pair.client.close(CloseCode::NORMAL, "").unwrap();
    pair.drive().unwrap();
    assert!(pair.server.is_closed());
    assert!(pair.server.poll_timeout().is_some());
}

proptest::proptest! {
    /// A driver that calls `handle_timeout` whenever `poll_timeout` is due never spins: at most
    /// two calls at the same instant leave the next deadline in the future, or none.
    #[test]
    fn due_timers_settle_after_at_most_two_calls(
        ops in proptest::collection::vec((0u8..4, 0u64..20_000), 1..40),
    ) {
        let t0 = Instant::now();
        let mut now = t0;
        let mut pair = keepalive_pair();
        pair.server.handle_timeout(now);
        for (op, millis) in ops {
            match op {
                0 => now += Duration::from_millis(millis * 3),
                1 => pair.server.handle_input(&[0x89]),
                2 => { let _ = pair.server.close(CloseCode::NORMAL, ""); }
                _ => { let _ = pair.server.poll_message(); }
            }
            for _ in 0..2 {
                if pair.server.poll_timeout().is_some_and(|at| at <= now) {
                    pair.server.handle_timeout(now);
                }
                while pair.server.poll_message().is_some() {}
            }
            let next = pair.server.poll_timeout();
            proptest::prop_assert!(next.is_none_or(|at| at > now), "{next:?} at {now:?}");
        }
    }
}

#[test]
fn told_when_input_came_the_ping_goes_an_idle_period_after_it() {
    let t0 = Instant::now();
    let mut pair = keepalive_pair();
    pair.server.handle_timeout(t0);
    // Input 1 s in, then silence: the ping goes at 1 s + IDLE, not at the check after it
    // (2 × IDLE), so that a dead peer is found within IDLE + PONG of its last word.
    pair.client.send(Message::text("last word")).unwrap();
    pair.drive().unwrap();
    pair.server.input_at(t0 + s(1));
    pair.server.handle_timeout(t0 + IDLE);
    assert_eq!(
        pair.server.poll_transmit(),
        None,
        "pinged before IDLE of silence"
    );
    assert_eq!(pair.server.poll_timeout(), Some(t0 + s(1) + IDLE));
    pair.server.handle_timeout(t0 + s(1) + IDLE);
    assert!(
        pair.server.poll_transmit().is_some(),
        "no ping after IDLE of silence"
    );
    assert_eq!(pair.server.poll_timeout(), Some(t0 + s(1) + IDLE + PONG));
}

#[test]
fn input_told_late_still_counts_from_its_time() {
    let t0 = Instant::now();
    let mut pair = keepalive_pair();
    pair.server.handle_timeout(t0);
    pair.client.send(Message::text("hi")).unwrap();
    pair.drive().unwrap();
    // The check comes a whole idle period after the input: the peer is pinged at once.
    pair.server.input_at(t0 + s(1));
    pair.server.handle_timeout(t0 + s(1) + IDLE + s(3));
    assert!(pair.server.poll_transmit().is_some());
    assert_eq!(
        pair.server.poll_timeout(),
        Some(t0 + s(1) + IDLE + s(3) + PONG)
    );
}
