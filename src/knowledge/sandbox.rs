//! Reading uploads in a child process, so that no file can take the engine down.
//!
//! The parsers (lopdf, pdf-extract, zip, quick-xml) are large and were not written for hostile
//! input, and the worst they can do is beyond `catch_unwind`: a stack overflow or a failed
//! allocation aborts the whole process, and with it every live call. So the engine never parses
//! an upload itself. Each document is read by `callgenius extract-document`, a child process of
//! the engine's own binary ([`child_main`]): the stored bytes go in on stdin, the
//! [`Extracted`] blocks (or the document's own [`ExtractError`]) come back as JSON on stdout.
//!
//! Before the child execs, `setrlimit` caps its address space (`RLIMIT_AS` and `RLIMIT_DATA`:
//! an allocation past it fails and the child aborts), its CPU time (`RLIMIT_CPU`: SIGXCPU, then
//! SIGKILL a second later), core dumps (none) and the files it may write (none); it runs at a
//! lower priority than live calls, with one rayon thread, and with none of the engine's
//! environment (no secrets). The engine feeds stdin while it reads stdout (up to the output
//! cap, then it kills the child) and the end of stderr (for the log), and kills the child when
//! the wall-clock timeout passes. A child that crashes, is killed or breaks a limit fails its
//! document with [`SandboxError::Unsafe`]: that is final (the same file would do it again),
//! unlike a lease that lapses because the engine stopped.

use std::io::{self, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

use super::extract::{self, ExtractError, Extracted};
use crate::config::ExtractionSettings;

/// The hidden subcommand the child runs.
pub const SUBCOMMAND: &str = "extract-document";

/// How much of the end of the child's stderr is kept for the log.
const STDERR_TAIL: usize = 2048;

/// What the child writes on stdout.
type Outcome = Result<Extracted, ExtractError>;

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The document itself gave no text (damaged, encrypted, scanned, refused by the reader's
    /// own checks): its sentence for the uploader.
    #[error(transparent)]
    Document(#[from] ExtractError),
    /// The child crashed, was killed, or broke a limit; `reason` is for the log.
    #[error(
        "the file could not be read safely: the reader crashed or went past its limits on \
         memory, time or output"
    )]
    Unsafe { reason: String },
    /// The child could not be started: a problem of this machine, not of the file.
    #[error("the document reader could not be started: {0}")]
    Spawn(io::Error),
}

/// Runs document extraction in child processes under [`ExtractionSettings`]' limits.
#[derive(Debug, Clone)]
pub struct Sandbox {
    /// `None` when the engine's own executable could not be found.
    program: Option<PathBuf>,
    limits: ChildLimits,
    timeout: Duration,
    max_output: u64,
}

impl Sandbox {
    pub fn new(settings: &ExtractionSettings) -> Self {
        const MIB: u64 = 1024 * 1024;
        Self {
            program: settings
                .program
                .clone()
                .or_else(|| std::env::current_exe().ok()),
            limits: ChildLimits {
                memory_bytes: settings.memory_mib.saturating_mul(MIB),
                cpu_secs: settings.cpu_secs,
            },
            timeout: Duration::from_secs(settings.timeout_secs),
            max_output: settings.max_output_mib.saturating_mul(MIB),
        }
    }

    /// The text of a PDF or DOCX, read by a child process.
    pub async fn extract(&self, bytes: Vec<u8>) -> Result<Extracted, SandboxError> {
        let program = self.program.as_ref().ok_or_else(|| {
            SandboxError::Spawn(io::Error::new(
                io::ErrorKind::NotFound,
                "the engine's executable was not found; set extraction.program",
            ))
        })?;
        let mut command = Command::new(program);
        command
            .arg(SUBCOMMAND)
            .env_clear()
            .env("RAYON_NUM_THREADS", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let limits = self.limits;
        // SAFETY: the closure runs in the forked child before exec; it allocates nothing and
        // calls only async-signal-safe functions (getrlimit, setrlimit, setpriority).
        unsafe {
            command.pre_exec(move || limits.apply());
        }
        let mut child = command.spawn().map_err(SandboxError::Spawn)?;
        let pid = child.id();
        let (Some(mut stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(SandboxError::Spawn(io::Error::other(
                "the child has no pipes",
            )));
        };
        let max_output = self.max_output;
        let feed = async move {
            // A child that died stops reading: its exit status tells why, not this error.
            let _ = stdin.write_all(&bytes).await;
            drop(stdin);
        };
        let output = async move {
            let mut out = Vec::new();
            let read = stdout.take(max_output + 1).read_to_end(&mut out).await;
            if out.len() as u64 > max_output {
                kill(pid);
            }
            (out, read)
        };
        let run = async {
            let ((), (out, read), tail) = tokio::join!(feed, output, stderr_tail(stderr));
            (out, read, tail, child.wait().await)
        };
        let Ok((out, read, tail, status)) = tokio::time::timeout(self.timeout, run).await else {
            let _ = child.start_kill();
            let _ = child.wait().await;
            return Err(SandboxError::Unsafe {
                reason: format!(
                    "still reading after {} s (the wall-clock limit); killed",
                    self.timeout.as_secs()
                ),
            });
        };
        let unsafe_because = |reason: String| {
            let tail = String::from_utf8_lossy(&tail);
            let last = tail.trim().lines().last().unwrap_or_default();
            let reason = if last.is_empty() {
                reason
            } else {
                format!("{reason}; its last words: {last}")
            };
            SandboxError::Unsafe { reason }
        };
        if out.len() as u64 > max_output {
            return Err(unsafe_because(format!(
                "its output passed {} MiB; killed",
                max_output / (1024 * 1024)
            )));
        }
        let status = status.map_err(|e| unsafe_because(format!("waiting for it failed: {e}")))?;
        if !status.success() {
            return Err(unsafe_because(self.limits.describe(status)));
        }
        if let Err(e) = read {
            return Err(unsafe_because(format!("its output could not be read: {e}")));
        }
        match serde_json::from_slice::<Outcome>(&out) {
            Ok(Ok(extracted)) => Ok(extracted),
            Ok(Err(error)) => Err(SandboxError::Document(error)),
            Err(e) => Err(unsafe_because(format!("its output is not a result: {e}"))),
        }
    }
}

/// SIGKILL to a child that has not been waited for (so its pid cannot have been reused).
fn kill(pid: Option<u32>) {
    if let Some(pid) = pid.and_then(|p| libc::pid_t::try_from(p).ok()) {
        // SAFETY: kill(2) has no memory-safety preconditions.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
    }
}

/// Reads a pipe to its end, keeping its last [`STDERR_TAIL`] bytes.
async fn stderr_tail(mut pipe: impl AsyncRead + Unpin) -> Vec<u8> {
    let mut tail = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n @ 1..) = pipe.read(&mut buf).await {
        tail.extend_from_slice(&buf[..n]);
        if tail.len() > STDERR_TAIL {
            tail.drain(..tail.len() - STDERR_TAIL);
        }
    }
    tail
}

/// The resource limits set in the child.
#[derive(Debug, Clone, Copy)]
struct ChildLimits {
    memory_bytes: u64,
    cpu_secs: u64,
}

/// Sets a resource limit, never above the hard limit the engine itself has.
macro_rules! set_limit {
    ($resource:expr, $soft:expr, $hard:expr) => {{
        let mut current = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: `current` is a valid rlimit to write into.
        if unsafe { libc::getrlimit($resource, &mut current) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let hard = (($hard) as libc::rlim_t).min(current.rlim_max);
        let limit = libc::rlimit {
            rlim_cur: (($soft) as libc::rlim_t).min(hard),
            rlim_max: hard,
        };
        // SAFETY: `limit` is a valid rlimit.
        if unsafe { libc::setrlimit($resource, &limit) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }};
}

impl ChildLimits {
    /// Runs in the child between fork and exec.
    fn apply(self) -> io::Result<()> {
        set_limit!(libc::RLIMIT_AS, self.memory_bytes, self.memory_bytes);
        set_limit!(libc::RLIMIT_DATA, self.memory_bytes, self.memory_bytes);
        // SIGXCPU at the soft limit; SIGKILL at the hard one, should SIGXCPU be caught.
        set_limit!(libc::RLIMIT_CPU, self.cpu_secs, self.cpu_secs + 1);
        set_limit!(libc::RLIMIT_CORE, 0, 0);
        set_limit!(libc::RLIMIT_FSIZE, 0, 0);
        // Live calls come first; failing to lower the priority is harmless.
        // SAFETY: setpriority(2) has no memory-safety preconditions.
        unsafe {
            libc::setpriority(libc::PRIO_PROCESS, 0, 10);
        }
        Ok(())
    }

    /// Why a child ended unsuccessfully, for the log.
    fn describe(&self, status: ExitStatus) -> String {
        let memory = self.memory_bytes / (1024 * 1024);
        match status.signal() {
            Some(libc::SIGXCPU) => format!("it used its {} s of CPU time", self.cpu_secs),
            Some(libc::SIGKILL) => format!(
                "it was killed (SIGKILL: past its {} s of CPU time, or by the system)",
                self.cpu_secs
            ),
            Some(libc::SIGABRT) => format!(
                "it aborted (SIGABRT: an allocation past its {memory} MiB of memory, or a \
                 stack overflow)"
            ),
            Some(libc::SIGSEGV) => "it crashed (SIGSEGV)".to_string(),
            Some(signal) => format!("it was stopped by signal {signal}"),
            None => format!("it exited with {status}"),
        }
    }
}

/// `callgenius extract-document`: the document on stdin, an [`Outcome`] as JSON on stdout.
pub fn child_main() -> io::Result<()> {
    let mut bytes = Vec::new();
    io::stdin().lock().read_to_end(&mut bytes)?;
    let outcome: Outcome = extract::extract(&bytes);
    drop(bytes);
    let mut stdout = io::stdout().lock();
    serde_json::to_writer(&mut stdout, &outcome).map_err(io::Error::other)?;
    stdout.flush()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::knowledge::extract::{Block, BlockKind, Format};

    /// A sandbox whose "extractor" is a shell script, so that the runner's handling of every
    /// way a child can end is tested without a hostile file.
    struct Script {
        _dir: tempfile::TempDir,
        settings: ExtractionSettings,
    }

    fn script(body: &str) -> Script {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("extractor");
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        Script {
            settings: ExtractionSettings {
                program: Some(path),
                ..ExtractionSettings::default()
            },
            _dir: dir,
        }
    }

    async fn run(script: &Script, input: &[u8]) -> Result<Extracted, SandboxError> {
        Sandbox::new(&script.settings).extract(input.to_vec()).await
    }

    fn reason(result: Result<Extracted, SandboxError>) -> String {
        match result {
            Err(SandboxError::Unsafe { reason }) => reason,
            other => panic!("not refused as unsafe: {other:?}"),
        }
    }

    #[tokio::test]
    async fn the_childs_json_comes_back_as_blocks_or_the_documents_error() {
        let extracted = Extracted {
            format: Format::Docx,
            pages: 2,
            blocks: vec![Block {
                page: 2,
                kind: BlockKind::Heading(1),
                text: "Fees".into(),
            }],
        };
        let json = serde_json::to_string(&Outcome::Ok(extracted)).unwrap();
        // The script reads all its input first, as the real child does.
        let s = script(&format!("/bin/cat >/dev/null; printf '%s' '{json}'"));
        let back = run(&s, &[7u8; 300_000]).await.unwrap();
        assert_eq!((back.format, back.pages), (Format::Docx, 2));
        assert_eq!(back.blocks[0].kind, BlockKind::Heading(1));

        let s = script(r#"/bin/cat >/dev/null; printf '{"Err":"Encrypted"}'"#);
        assert!(matches!(
            run(&s, b"%PDF-").await,
            Err(SandboxError::Document(ExtractError::Encrypted))
        ));
    }

    #[tokio::test]
    async fn the_child_runs_under_the_limits_without_the_engines_environment() {
        let s = script(
            r#"/bin/cat >/dev/null
printf '{"Err":{"Damaged":"%s %s %s %s %s"}}' "$(ulimit -v)" "$(ulimit -t)" "$(ulimit -c)" "$(ulimit -f)" "$(/usr/bin/env | /usr/bin/wc -l)""#,
        );
        let Err(SandboxError::Document(ExtractError::Damaged(limits))) = run(&s, b"x").await else {
            panic!("the script's answer");
        };
        // 1 GiB in KiB, 30 s, no core files, no files written; only RAYON_NUM_THREADS (and
        // what the shell sets itself: PWD) in the environment.
        let fields: Vec<&str> = limits.split(' ').collect();
        assert_eq!(&fields[..4], ["1048576", "30", "0", "0"], "{limits}");
        let variables: usize = fields[4].parse().unwrap();
        assert!(variables <= 3, "{limits}");
    }

    #[tokio::test]
    async fn a_child_past_the_wall_clock_limit_is_killed() {
        let mut s = script("/usr/bin/sleep 30");
        s.settings.timeout_secs = 1;
        let started = std::time::Instant::now();
        let why = reason(run(&s, b"x").await);
        assert!(why.contains("after 1 s"), "{why}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[tokio::test]
    async fn a_child_past_the_cpu_limit_is_stopped() {
        let mut s = script("while :; do :; done");
        s.settings.cpu_secs = 1;
        let started = std::time::Instant::now();
        let why = reason(run(&s, b"x").await);
        assert!(why.contains("1 s of CPU time"), "{why}");
        assert!(started.elapsed() < Duration::from_secs(20));
    }

    #[tokio::test]
    async fn output_past_the_cap_is_cut_off_and_the_child_killed() {
        let mut s = script("/bin/cat /dev/zero");
        s.settings.max_output_mib = 1;
        let why = reason(run(&s, b"x").await);
        assert!(why.contains("output passed 1 MiB"), "{why}");
    }

    #[tokio::test]
    async fn crashes_and_garbage_are_unsafe_and_stderr_is_kept_for_the_log() {
        let s = script("echo 'thread main has overflowed its stack' >&2; kill -SEGV $$");
        let why = reason(run(&s, b"x").await);
        assert!(why.contains("SIGSEGV"), "{why}");
        assert!(why.contains("overflowed its stack"), "{why}");

        let s = script("/bin/cat >/dev/null; echo not json");
        assert!(reason(run(&s, b"x").await).contains("not a result"));

        let s = script("exit 3");
        assert!(reason(run(&s, b"x").await).contains("exit status: 3"));
    }

    #[tokio::test]
    async fn a_missing_program_is_not_the_files_fault() {
        let settings = ExtractionSettings {
            program: Some("/nonexistent/callgenius".into()),
            ..ExtractionSettings::default()
        };
        let result = Sandbox::new(&settings).extract(b"x".to_vec()).await;
        assert!(matches!(result, Err(SandboxError::Spawn(_))), "{result:?}");
    }
}
