//! The harness itself works end to end: what the ingest accepts reaches RabbitMQ.

use std::time::Duration;

use moss_tests::TestSystem;

#[tokio::test]
async fn an_event_posted_to_the_ingest_reaches_its_partition_queue() {
    let system = TestSystem::spawn().await.expect("the system starts");
    let outcome = async {
        let single = system.post_event(&system.new_user_event()).await?;
        let batch: Vec<_> = (0..9).map(|_| system.new_user_event()).collect();
        let batched = system.post_batch(&batch).await?;
        system
            .wait_until_queued(10, Duration::from_millis(20), Duration::from_secs(15))
            .await?;
        anyhow::Ok((single, batched, system.queued().await?))
    }
    .await;
    system.shutdown().await.expect("the system stops");
    let (single, batched, queued) = outcome.expect("the events reach RabbitMQ");
    assert_eq!(single, 202);
    assert_eq!(batched, 202);
    assert_eq!(queued, 10, "each accepted event is queued exactly once");
}
