//! A broadcast is encoded once: publishing allocates the same, whatever the subscriber count.
//! (A test binary of its own: it counts every allocation of the process.)

use switchboard::{Config, Message, Role, Topics, WebSocket};

#[global_allocator]
static ALLOCATOR: alloc_count::Counting = alloc_count::Counting;

/// Allocations made by one publish to `subscribers` connections (after a first publish, so
/// that one-time set-up is not counted).
async fn allocations_per_publish(subscribers: usize) -> usize {
    let topics = Topics::new();
    let mut peers = Vec::new();
    let mut receivers = Vec::new();
    let mut subscriptions = Vec::new();
    for _ in 0..subscribers {
        let (io, peer) = tokio::io::duplex(1 << 16);
        let ws = WebSocket::from_raw(io, Role::Server, Config::default(), Default::default());
        let (sender, receiver) = ws.split();
        subscriptions.push(topics.subscribe("all", &sender));
        peers.push(peer);
        receivers.push(receiver);
    }
    let message = Message::text("a message for everyone");
    assert_eq!(topics.publish("all", &message, None), subscribers);
    let before = alloc_count::snapshot();
    // The runtime is single-threaded and publishing does not yield: nothing else allocates.
    let queued = topics.publish("all", &message, None);
    let allocations = alloc_count::snapshot().since(&before).allocations;
    assert_eq!(queued, subscribers);
    allocations
}

#[tokio::test]
async fn a_broadcast_allocates_the_same_for_10_or_1000_subscribers() {
    let few = allocations_per_publish(10).await;
    let many = allocations_per_publish(1000).await;
    assert_eq!(few, many, "10 subscribers: {few} allocations, 1000: {many}");
    // The frame's bytes, the shared header their first clone makes, and the cell for the
    // frame's compressed variant.
    assert!(many <= 3, "{many} allocations per publish");
}
