//! CallGenius: a self-hostable voice-call runtime. See `ARCHITECTURE.md` for the module map.

pub mod accounts;
pub mod agent;
pub mod api;
pub mod app;
pub mod bench;
pub mod billing;
pub mod calls;
pub mod carrier;
pub mod cli;
pub mod commands;
pub mod config;
pub mod dialler;
pub mod domain;
pub mod events;
pub mod knowledge;
pub mod media;
pub mod models;
pub mod pipeline;
pub mod simulator;
pub mod store;
pub mod telemetry;
