//! `switchboard serve` stopped by signals: the first drains, a second exits at once, even
//! while a client that never answers the Close holds the drain.

mod support;

use support::Serve;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_ctrl_c_stops_the_drain_and_exits_with_130() {
    let mut serve = Serve::start(&["--mode", "echo", "--shutdown-grace", "60s"]);
    let url = serve.url();
    // Never read: the server's Close is never answered, and the drain would wait it out.
    let (_silent, _) = switchboard::connect(&url).await.unwrap();

    serve.interrupt();
    serve.line("shutdown requested");
    serve.interrupt();
    serve.line("exiting at once, without draining");
    assert_eq!(serve.wait(), Some(130));
}
