//! Application start-up: connect and migrate the database, bind the listener (port 0 allowed),
//! build the router, and run the server and its background workers until a shutdown signal.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;

use crate::api::{self, AppState, Telephony};
use crate::config::{Config, NodeSettings};
use crate::domain::NodeId;
use crate::media::MediaState;
use crate::models::SpeechModels;
use crate::models::pool::InferencePool;
use crate::store::{Db, StoreError};

/// How long a shutdown waits for live calls to end.
const CALL_DRAIN: Duration = Duration::from_secs(120);

/// How often idle rate-limit buckets are forgotten and metric histograms are compacted.
const MAINTENANCE_INTERVAL: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot create the data directory {path}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot open the database")]
    Database(#[source] StoreError),
    #[error("cannot migrate the database")]
    Migrate(#[source] StoreError),
    #[error("cannot register this node")]
    Node(#[source] StoreError),
    #[error(transparent)]
    Models(crate::models::ModelError),
    #[error("the LLM settings are unusable: {0}")]
    Llm(crate::agent::turn::TurnError),
    #[error("cannot listen on {addr}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A built engine: the database is migrated and the listener bound, nothing served yet.
pub struct Application {
    listener: TcpListener,
    local_addr: SocketAddr,
    public_url: String,
    router: Router,
    state: AppState,
    preload_models: bool,
    node: NodeId,
    nodes: NodeSettings,
    http: crate::config::HttpSettings,
}

impl Application {
    pub async fn build(mut config: Config) -> Result<Self, StartError> {
        std::fs::create_dir_all(&config.data_dir).map_err(|source| StartError::DataDir {
            path: config.data_dir.display().to_string(),
            source,
        })?;
        let db = Db::connect(&config.effective_database_url(), config.db_max_connections)
            .await
            .map_err(StartError::Database)?;
        db.migrate().await.map_err(StartError::Migrate)?;
        let listener = TcpListener::bind(config.addr)
            .await
            .map_err(|source| StartError::Bind {
                addr: config.addr,
                source,
            })?;
        let local_addr = listener.local_addr().map_err(|source| StartError::Bind {
            addr: config.addr,
            source,
        })?;
        // From here on the configuration names the address actually bound (port 0 resolved).
        config.addr = local_addr;
        let public_url = config
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{local_addr}"))
            .trim_end_matches('/')
            .to_owned();
        let pool = InferencePool::for_machine();
        let speech = SpeechModels::open(&config.models_dir, &config.voice_aliases, pool)
            .map_err(StartError::Models)?;
        let telephony = Telephony::new(&config, &public_url);
        api::carrier_auth::warn_if_insecure(&config);
        let media = MediaState::from_config(&config).map_err(StartError::Llm)?;
        // This process in the node registry; earlier processes on this machine and address are
        // gone (this one holds the address), so their calls are ended at the first sweep.
        let node_name = format!("{}/{local_addr}", host_name());
        let node = crate::store::nodes::register(&db, &node_name, i64::from(std::process::id()))
            .await
            .map_err(StartError::Node)?;
        let retired = crate::store::nodes::retire_previous(&db, node, &node_name)
            .await
            .map_err(StartError::Node)?;
        if retired > 0 {
            tracing::info!(retired, "earlier processes of this node retired");
        }
        telephony.live.set_node(node, node_name);
        let state = AppState::new(db, &config, Arc::new(speech), telephony, media);
        let router = api::router(state.clone(), &config.limits);
        tracing::info!(
            %local_addr, %public_url, database = state.db.backend().as_str(),
            "callgenius listening"
        );
        Ok(Self {
            listener,
            local_addr,
            public_url,
            router,
            state,
            preload_models: config.preload_models,
            node,
            nodes: config.nodes,
            http: config.http.clone(),
        })
    }

    pub fn port(&self) -> u16 {
        self.local_addr.port()
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The externally reachable base URL (configured, or the bound address).
    pub fn public_url(&self) -> &str {
        &self.public_url
    }

    /// Serves until `shutdown` resolves, then stops accepting, lets in-flight requests finish
    /// and closes the database pool. Returns early, with the error, if the server fails.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let Application {
            listener,
            router,
            state,
            preload_models,
            node,
            nodes,
            http,
            ..
        } = self;
        // Calls whose after-call work was cut short by a stop are finished now.
        let resumed = state.clone();
        tokio::spawn(async move {
            match crate::calls::aftercall::resume_unfinished(&resumed).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(calls = n, "finished the after-call work of earlier calls"),
                Err(error) => tracing::error!(%error, "could not resume after-call work"),
            }
        });
        // libphonenumber reads its metadata on first use (most of a second unoptimised).
        tokio::task::spawn_blocking(|| crate::carrier::numbers::check("+61255501234"));
        if preload_models {
            let speech = Arc::clone(&state.speech);
            tokio::spawn(async move {
                match speech.get().await {
                    Ok(_) => tracing::info!("speech models loaded"),
                    Err(error) => tracing::error!(%error, "speech models failed to load"),
                }
            });
        }
        let server = serve(listener, router, http, shutdown);
        let maintenance = maintenance(state.clone(), node, nodes);
        let knowledge = crate::knowledge::worker::run(state.knowledge.clone());
        let dialler = state.dialler.clone().run();
        let webhooks = crate::events::run(state.webhooks.clone());
        let outcome = tokio::select! {
            result = server => {
                tracing::info!("http server stopped");
                result.map_err(anyhow::Error::from)
            }
            () = maintenance => Err(anyhow::anyhow!("maintenance worker exited")),
            () = knowledge => Err(anyhow::anyhow!("knowledge worker exited")),
            () = dialler => Err(anyhow::anyhow!("dialler exited")),
            () = webhooks => Err(anyhow::anyhow!("webhook worker exited")),
        };
        crate::events::worker::release(&state.webhooks).await;
        // Media streams outlive the HTTP server's shutdown (they are upgraded connections): let
        // live calls finish before the pool closes under them.
        let live = state.telephony.live.count();
        if live > 0 {
            tracing::info!(live, "waiting for live calls to finish");
            let left = state.telephony.live.drain(CALL_DRAIN).await;
            if left > 0 {
                tracing::warn!(
                    left,
                    "calls still live after the drain timeout; stopping anyway"
                );
            }
        }
        // A clean stop: calls still live after the drain are left to the other nodes' sweep.
        if let Err(error) = crate::store::nodes::deregister(&state.db, node).await {
            tracing::warn!(%error, "could not deregister this node");
        }
        state.db.close().await;
        tracing::info!("database pool closed");
        outcome
    }
}

/// The first bytes of an HTTP/2 connection with prior knowledge.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Serves `router` on `listener` until `shutdown` resolves, then stops accepting and waits for
/// the connections' requests in flight to finish (upgraded websockets are the calls' own).
///
/// At most `max_connections` connections are served at once; past that the listener is not
/// read, so further clients wait in the kernel's queue. A client has `header_read_timeout_ms` to
/// send a request's headers, from connecting and between requests on a kept-alive connection;
/// one that dawdles is disconnected. The request timeouts are [`crate::api`]'s.
async fn serve(
    listener: TcpListener,
    router: Router,
    limits: crate::config::HttpSettings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use tower::ServiceExt;

    let header_timeout = Duration::from_millis(limits.header_read_timeout_ms);
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(header_timeout))
        .keep_alive_timeout(header_timeout);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            () = &mut shutdown => break,
            slot = Arc::clone(&slots).acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
        };
        let (stream, remote) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: wait rather than spin.
                    tracing::warn!(%error, "could not accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let service = hyper::service::service_fn(
            move |mut req: axum::http::Request<hyper::body::Incoming>| {
                req.extensions_mut()
                    .insert(axum::extract::ConnectInfo(remote));
                router.clone().oneshot(req)
            },
        );
        let builder = builder.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _slot = slot;
            // Until the protocol is known the connection is not hyper's, whose header timeout
            // would not yet run: a client that sends nothing is dropped here.
            if !tokio::time::timeout(header_timeout, protocol_known(&stream))
                .await
                .unwrap_or(false)
            {
                return;
            }
            let connection = builder
                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                .into_owned();
            if let Err(error) = watcher.watch(connection).await {
                tracing::debug!(%remote, error = %error, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// Waits until the first bytes tell HTTP/1 from HTTP/2 (they differ from the HTTP/2 preface, or
/// are all of it). `false` when the client closes first.
async fn protocol_known(stream: &tokio::net::TcpStream) -> bool {
    let mut buf = [0u8; 24];
    loop {
        match stream.peek(&mut buf).await {
            Ok(0) | Err(_) => return false,
            Ok(n) if n >= H2_PREFACE.len() || buf[..n] != H2_PREFACE[..n] => return true,
            // A partial preface: wait for more (peek returns at once while data is queued).
            Ok(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

/// Periodic housekeeping: forgets idle rate-limit keys, compacts metric histograms, and fails
/// calls whose stream never connected; and, every heartbeat, the node's upkeep. Runs until the
/// application stops.
async fn maintenance(state: AppState, node: NodeId, nodes: NodeSettings) {
    let housekeeping = async {
        let mut ticker = tokio::time::interval(MAINTENANCE_INTERVAL);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            state.limiters.forget_idle();
            state.metrics.run_upkeep();
            if let Err(error) = crate::calls::expire_unstarted(&state.db).await {
                tracing::warn!(%error, "could not sweep calls that never connected");
            }
        }
    };
    tokio::join!(housekeeping, node_upkeep(&state, node, &nodes));
}

/// Every heartbeat: records that this node is alive with its live calls' last moment, then
/// ends (and bills) the calls of nodes that are gone. The first round runs at start-up.
async fn node_upkeep(state: &AppState, node: NodeId, nodes: &NodeSettings) {
    let timeout = Duration::from_secs(nodes.timeout_secs);
    let mut ticker = tokio::time::interval(Duration::from_secs(nodes.heartbeat_secs));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        if let Err(error) = crate::calls::heartbeat(&state.db, &state.telephony.live, node).await {
            tracing::warn!(%error, "could not record this node's heartbeat");
        }
        match crate::calls::end_interrupted(&state.db, node, timeout).await {
            Ok(0) => {}
            Ok(ended) => tracing::info!(ended, "calls of nodes that are gone ended and billed"),
            Err(error) => {
                tracing::warn!(%error, "could not sweep the calls of nodes that are gone")
            }
        }
    }
}

/// This machine's host name, for the node registry.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}
