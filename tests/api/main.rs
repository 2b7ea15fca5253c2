//! Integration suite over real HTTP on loopback. Runs against SQLite by default and against
//! PostgreSQL when `CALLGENIUS_TEST_DATABASE_URL` is set (see `helpers`).

mod agents;
mod auth;
mod bench;
mod billing;
mod calls;
mod carrier_security;
mod carrier_signing;
mod carriers;
mod conversations;
mod errors;
mod helpers;
mod history;
mod http_edge;
mod knowledge;
mod limits;
mod llm_server;
mod media;
mod receiver;
mod system;
mod telephony;
mod tenants;
mod webhooks;
