//! The process's one ONNX Runtime environment, loaded from the shared library that
//! `scripts/fetch-models` extracts from the pinned `onnxruntime` wheel.

use std::path::Path;
use std::sync::{Mutex, OnceLock};

use ort::environment::Environment;
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;

use super::ModelError;

/// Where the library sits under the models directory.
pub const LIBRARY: &str = "onnxruntime/libonnxruntime.so.1.32.0";

/// Intra-op threads per session. Calls run inference concurrently on the inference pool, so each
/// session uses few threads rather than all cores.
const INTRA_THREADS: usize = 1;

/// Returns the environment, loading the library on first use. Later calls reuse it whatever
/// `dir` they pass: a process has one ONNX Runtime.
pub fn environment(dir: &Path) -> Result<Environment, ModelError> {
    static ENV: OnceLock<Environment> = OnceLock::new();
    static INIT: Mutex<()> = Mutex::new(());
    if let Some(env) = ENV.get() {
        return Ok(env.clone());
    }
    let _guard = INIT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(env) = ENV.get() {
        return Ok(env.clone());
    }
    let path = dir.join(LIBRARY);
    let fail = |reason: String| ModelError::Runtime {
        path: path.clone(),
        reason,
    };
    if !path.is_file() {
        return Err(ModelError::Missing { path });
    }
    let env = ort::init_from(&path)
        .map_err(|e| fail(e.to_string()))?
        .with_name("callgenius")
        .build()
        .map_err(|e| fail(e.to_string()))?;
    Ok(ENV.get_or_init(|| env).clone())
}

/// Opens one model file as a session.
pub fn session(env: &Environment, path: &Path) -> Result<Session, ModelError> {
    let fail = |reason: String| ModelError::Load {
        path: path.to_owned(),
        reason,
    };
    if !path.is_file() {
        return Err(ModelError::Missing {
            path: path.to_owned(),
        });
    }
    Session::builder(env)
        .map_err(|e| fail(e.to_string()))?
        .with_optimization_level(GraphOptimizationLevel::Level3)
        .map_err(|e| fail(e.to_string()))?
        .with_intra_threads(INTRA_THREADS)
        .map_err(|e| fail(e.to_string()))?
        .commit_from_file(path)
        .map_err(|e| fail(e.to_string()))
}
