//! Webhook delivery throughput on this machine: events written to the outbox (each fanned out to
//! one endpoint, three per call as calls produce them), then delivered by one worker to a local
//! receiver that answers 200 at once. Each measurement times the worker's rounds (claim a batch,
//! POST concurrently, record the attempts) until nothing is due. SQLite in a temporary
//! directory by default; `CALLGENIUS_BENCH_DATABASE_URL` names a PostgreSQL database instead.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::post;
use callgenius::config::WebhookSettings;
use callgenius::domain::TenantId;
use callgenius::events::{Webhooks, worker};
use callgenius::store::{Db, accounts, outbox, webhooks};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use secrecy::SecretString;
use serde_json::json;

const CALLS: usize = 100;
const EVENTS: usize = CALLS * 3;

async fn receiver(count: Arc<AtomicUsize>) -> String {
    let app = Router::new().route(
        "/hook",
        post(move || {
            let count = Arc::clone(&count);
            async move {
                count.fetch_add(1, Ordering::Relaxed);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

async fn setup(dir: &std::path::Path) -> (Db, TenantId, Webhooks, Arc<AtomicUsize>) {
    let url = std::env::var("CALLGENIUS_BENCH_DATABASE_URL")
        .unwrap_or_else(|_| format!("sqlite://{}?mode=rwc", dir.join("bench.db").display()));
    let db = Db::connect(&SecretString::from(url), 10).await.unwrap();
    db.migrate().await.unwrap();
    let mut tx = db.begin_write().await.unwrap();
    let email = format!("bench-{}@example.com", uuid::Uuid::new_v4());
    let user = accounts::insert_user(&mut tx, &email, "x").await.unwrap();
    let tenant = TenantId(
        accounts::insert_tenant(&mut tx, "Bench", user)
            .await
            .unwrap()
            .id,
    );
    tx.commit().await.unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let url = receiver(Arc::clone(&count)).await;
    let events: Vec<String> = outbox::EVENT_TYPES.iter().map(|t| t.to_string()).collect();
    webhooks::create_endpoint(
        &db,
        tenant,
        webhooks::NewEndpoint {
            url: &url,
            events: &events,
            description: None,
            secret: "whsec_bench",
        },
    )
    .await
    .unwrap();
    let settings = WebhookSettings::default();
    let engine = SocketAddr::from(([127, 0, 0, 1], 9));
    let hooks = Webhooks::new(db.clone(), &settings, engine, "http://127.0.0.1:9");
    (db, tenant, hooks, count)
}

/// Writes three events for each of `CALLS` calls, call by call, as separate transactions.
async fn write_events(db: &Db, tenant: TenantId, first_call: usize) {
    for call in first_call..first_call + CALLS {
        for kind in [
            outbox::CALL_STARTED,
            outbox::CALL_ENDED,
            outbox::CALL_TRANSCRIPT_READY,
        ] {
            let mut tx = db.begin_write().await.unwrap();
            let data = json!({ "call_id": call, "status": "completed", "duration_sec": 42.0 });
            outbox::push(&mut tx, tenant, kind, &data).await.unwrap();
            tx.commit().await.unwrap();
        }
    }
}

fn delivery(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (db, tenant, hooks, count) = runtime.block_on(setup(dir.path()));
    let mut group = c.benchmark_group("webhooks");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    group.throughput(Throughput::Elements(EVENTS as u64));
    let mut calls = 0;
    group.bench_function("deliver_300_events", |b| {
        b.iter_custom(|iterations| {
            runtime.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iterations {
                    write_events(&db, tenant, calls).await;
                    calls += CALLS;
                    let before = count.load(Ordering::Relaxed);
                    let started = Instant::now();
                    while worker::deliver_due(&hooks).await.unwrap() > 0 {}
                    total += started.elapsed();
                    assert_eq!(count.load(Ordering::Relaxed) - before, EVENTS);
                }
                total
            })
        })
    });
    group.finish();
}

criterion_group!(benches, delivery);
criterion_main!(benches);
