//! Running untrusted Python (generated or harvested code) in a contained child process.
//!
//! Each run gets a fresh temporary directory as its working directory, a cleared environment, its
//! own session and process group (`setsid`), resource limits (address space, CPU seconds, number
//! of processes, file size, no core dumps), a wall-clock timeout after which the whole process
//! group is killed, capped output, and no network when the kernel lets us make a new network
//! namespace (`unshare -n`; [`network_isolated`] says whether it does). Without root, the
//! network and PID namespaces are made inside a new user namespace, where the kernel lets an
//! unprivileged user make one (the program keeps its user and group ids there).

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

/// Limits of one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock time before the process group is killed.
    pub timeout: Duration,
    /// Address-space limit in bytes.
    pub memory_bytes: u64,
    /// CPU seconds.
    pub cpu_seconds: u64,
    /// Most processes (threads count too) for the sandbox's user... applied as RLIMIT_NPROC.
    pub processes: u64,
    /// Largest file the program may write, in bytes.
    pub file_bytes: u64,
    /// Bytes of stdout and of stderr kept; the rest is discarded.
    pub output_bytes: usize,
    /// When running as root, run the program as `nobody`/`nogroup` so it cannot change files it
    /// does not own and the process limit applies (root ignores RLIMIT_NPROC). The interpreter
    /// must then be executable by `nobody` (e.g. `/usr/bin/python3`).
    pub drop_privileges: bool,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            timeout: Duration::from_secs(10),
            memory_bytes: 2 << 30,
            cpu_seconds: 10,
            processes: 64,
            file_bytes: 16 << 20,
            output_bytes: 1 << 20,
            drop_privileges: false,
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Exited with this code.
    Exited(i32),
    /// Killed by this signal (e.g. the CPU or memory limit).
    Signaled(i32),
    /// Ran past the wall-clock timeout and was killed.
    TimedOut,
}

/// The result of a run.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// How it ended.
    pub status: Status,
    /// Captured stdout (capped).
    pub stdout: String,
    /// Captured stderr (capped).
    pub stderr: String,
    /// Whether output was cut at the cap.
    pub truncated: bool,
    /// Wall time.
    pub elapsed: Duration,
}

impl Outcome {
    /// Exited with code 0.
    pub fn success(&self) -> bool {
        self.status == Status::Exited(0)
    }
}

const NOBODY: u32 = 65534;
const NOGROUP: u32 = 65534;

/// Whether runs get their own PID namespace, in which the program is the first process: when it
/// ends or is killed, the kernel kills everything it started, also what left its process group
/// (a daemon that called `setsid`). Checked once.
pub fn pid_isolated() -> bool {
    static ISOLATED: OnceLock<bool> = OnceLock::new();
    *ISOLATED.get_or_init(|| unshare_works(&["--pid", "--fork", "true"]))
}

/// Whether runs get their own network namespace (no network). Checked once.
pub fn network_isolated() -> bool {
    static ISOLATED: OnceLock<bool> = OnceLock::new();
    *ISOLATED.get_or_init(|| unshare_works(&["-n", "true"]))
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Whether `unshare ARGS` succeeds as this user; without root, inside a new user namespace, as
/// a run makes them.
fn unshare_works(args: &[&str]) -> bool {
    let mut cmd = Command::new("unshare");
    if !is_root() {
        cmd.arg("--user");
    }
    cmd.args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs `python -I -S? script` with `files` written into a fresh working directory first.
/// `python` is the interpreter (e.g. `python3`); `script` is the program text.
pub fn run_python(
    python: &str,
    script: &str,
    files: &[(&str, &[u8])],
    limits: &Limits,
) -> std::io::Result<Outcome> {
    let dir = tempdir()?;
    let result = run_in(dir.path(), python, script, files, limits);
    dir.remove();
    result
}

/// What a reader thread has read of a pipe so far, and whether it had to drop some (the cap).
type Captured = Arc<Mutex<(Vec<u8>, bool)>>;

fn run_in(
    dir: &Path,
    python: &str,
    script: &str,
    files: &[(&str, &[u8])],
    limits: &Limits,
) -> std::io::Result<Outcome> {
    std::fs::write(dir.join("main.py"), script)?;
    for (name, content) in files {
        std::fs::write(dir.join(name), content)?;
    }
    let root = is_root();
    let drop = limits.drop_privileges && root;
    if drop {
        // The program owns its directory and nothing else.
        for entry in std::iter::once(dir.to_path_buf())
            .chain(std::fs::read_dir(dir)?.flatten().map(|e| e.path()))
        {
            std::os::unix::fs::chown(&entry, Some(NOBODY), Some(NOGROUP))?;
        }
    }
    let isolate_network = network_isolated();
    let isolate_pids = pid_isolated();
    // Without root, the namespaces need a user namespace of their own, in which the program keeps
    // its ids (one-line maps, formatted before the fork).
    let user_namespace = !root && (isolate_network || isolate_pids);
    // SAFETY: geteuid and getegid have no preconditions.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    let uid_map = format!("{uid} {uid} 1");
    let gid_map = format!("{gid} {gid} 1");
    let mut cmd = Command::new(python);
    cmd.arg("-B").arg("main.py");
    cmd.current_dir(dir)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", dir)
        .env("TMPDIR", dir)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONHASHSEED", "0")
        .env("PYTHONIOENCODING", "utf-8")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let l = *limits;
    // SAFETY: between fork and exec only async-signal-safe calls (setsid, unshare, waitpid,
    // open, write, close, setrlimit…) and `fork`, which POSIX does not list (it runs atfork
    // handlers): here it runs in the single-threaded child of a fork, where no lock those
    // handlers take can be held by another thread.
    unsafe {
        cmd.pre_exec(move || {
            libc::setsid();
            if user_namespace && libc::unshare(libc::CLONE_NEWUSER) == 0 {
                // Without the maps the program would run as the overflow id 65534. A map that
                // cannot be written leaves it so; the namespaces below work either way.
                write_proc_self(c"/proc/self/setgroups", b"deny");
                write_proc_self(c"/proc/self/uid_map", uid_map.as_bytes());
                write_proc_self(c"/proc/self/gid_map", gid_map.as_bytes());
            }
            if isolate_network {
                // A new, empty network namespace: no interfaces, no network.
                libc::unshare(libc::CLONE_NEWNET);
            }
            let mut in_namespace = false;
            if isolate_pids && libc::unshare(libc::CLONE_NEWPID) == 0 {
                // The namespace's first process is the next child: it runs the program, and
                // this process only waits for it and ends as it did. As PID 1 the program ignores
                // signals whose action is the default that its namespace sends it (its own
                // SIGTERM, say); the wall-clock kill comes from outside and is SIGKILL.
                match libc::fork() {
                    -1 => return Err(std::io::Error::last_os_error()),
                    0 => in_namespace = true,
                    program => wait_and_mirror(program),
                }
            }
            let set = |resource, value: u64| {
                let lim = libc::rlimit {
                    rlim_cur: value as libc::rlim_t,
                    rlim_max: value as libc::rlim_t,
                };
                libc::setrlimit(resource, &lim);
            };
            set(libc::RLIMIT_AS, l.memory_bytes);
            set(libc::RLIMIT_CPU, l.cpu_seconds);
            set(libc::RLIMIT_NPROC, l.processes);
            set(libc::RLIMIT_FSIZE, l.file_bytes);
            set(libc::RLIMIT_CORE, 0);
            if drop {
                let groups: [libc::gid_t; 0] = [];
                if libc::setgroups(0, groups.as_ptr()) != 0
                    || libc::setgid(NOGROUP) != 0
                    || libc::setuid(NOBODY) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
            }
            if in_namespace {
                // The program is not its group's leader here, so it could leave the group that
                // the timeout kills; it dies with the process that waits for it instead, which
                // stays in the group. (Set after `setuid`, which clears it.)
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            }
            Ok(())
        });
    }
    let started = Instant::now();
    let mut child = cmd.spawn()?;
    let pid = child.id() as i32;
    let cap = limits.output_bytes;
    // Each reader fills a shared buffer, so that what came is kept even if the pipe stays open.
    let read_capped = |mut r: Box<dyn Read + Send>| {
        let kept: Captured = Arc::default();
        let buffer = kept.clone();
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            loop {
                match r.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        let mut kept = buffer.lock().unwrap_or_else(PoisonError::into_inner);
                        let room = cap.saturating_sub(kept.0.len());
                        kept.0.extend_from_slice(&buf[..n.min(room)]);
                        kept.1 |= n > room;
                    }
                }
            }
        });
        (reader, kept)
    };
    let out = read_capped(Box::new(child.stdout.take().expect("piped")));
    let err = read_capped(Box::new(child.stderr.take().expect("piped")));
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status_of(status);
        }
        if started.elapsed() >= limits.timeout {
            // SAFETY: kill the child's whole process group (it called setsid).
            unsafe {
                libc::killpg(pid, libc::SIGKILL);
            }
            let _ = child.kill();
            let _ = child.wait();
            break Status::TimedOut;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    // Descendants that outlived the main process share its group: stop them too.
    // SAFETY: as above.
    unsafe {
        libc::killpg(pid, libc::SIGKILL);
    }
    // A process that left the group (and, without a PID namespace, outlived the program) may
    // hold the output pipes open: what came until shortly after the end is what is read.
    let grace = Instant::now() + Duration::from_millis(500);
    let collect = |(reader, kept): (std::thread::JoinHandle<()>, Captured)| {
        while !reader.is_finished() && Instant::now() < grace {
            std::thread::sleep(Duration::from_millis(5));
        }
        let kept = kept.lock().unwrap_or_else(PoisonError::into_inner);
        (String::from_utf8_lossy(&kept.0).into_owned(), kept.1)
    };
    let (stdout, t1) = collect(out);
    let (stderr, t2) = collect(err);
    Ok(Outcome {
        status,
        stdout,
        stderr,
        truncated: t1 || t2,
        elapsed: started.elapsed(),
    })
}

/// Writes `data` to a file of `/proc/self` (a user namespace's maps), ignoring failure.
///
/// # Safety
///
/// Only between fork and exec: it makes only async-signal-safe calls.
unsafe fn write_proc_self(path: &std::ffi::CStr, data: &[u8]) {
    let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
    if fd >= 0 {
        libc::write(fd, data.as_ptr().cast(), data.len());
        libc::close(fd);
    }
}

/// In the process between the sandbox's caller and its program (the PID namespace's parent):
/// closes every file, waits for `program` and ends the way it did. Closing matters: `spawn`
/// returns only once every copy of its exec-error pipe is closed, and the reader threads once
/// every copy of the output pipes is.
///
/// # Safety
///
/// Only between fork and exec; it never returns.
unsafe fn wait_and_mirror(program: libc::pid_t) -> ! {
    if libc::syscall(libc::SYS_close_range, 0u32, u32::MAX, 0u32) != 0 {
        for fd in 0..1024 {
            libc::close(fd);
        }
    }
    let mut status = 0;
    while libc::waitpid(program, &mut status, 0) == -1 {
        if *libc::__errno_location() != libc::EINTR {
            libc::_exit(127);
        }
    }
    if libc::WIFSIGNALED(status) {
        let signal = libc::WTERMSIG(status);
        // Dying the same way must not dump this process's memory (it is a copy of the caller's).
        let no_core = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        libc::setrlimit(libc::RLIMIT_CORE, &no_core);
        libc::signal(signal, libc::SIG_DFL);
        libc::raise(signal);
        libc::_exit(128 + signal);
    }
    libc::_exit(libc::WEXITSTATUS(status))
}

fn status_of(status: std::process::ExitStatus) -> Status {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => Status::Exited(code),
        (None, Some(sig)) => Status::Signaled(sig),
        _ => Status::Exited(-1),
    }
}

struct TempDir(std::path::PathBuf);

impl TempDir {
    fn path(&self) -> &Path {
        &self.0
    }
    fn remove(self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tempdir() -> std::io::Result<TempDir> {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!(
        "clarifycoder-sandbox-{}-{n}-{nanos}",
        std::process::id()
    ));
    std::fs::create_dir(&dir)?;
    Ok(TempDir(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            timeout: Duration::from_secs(5),
            cpu_seconds: 5,
            ..Limits::default()
        }
    }

    #[test]
    fn runs_python_with_files_in_its_own_directory() {
        let out = run_python(
            "python3",
            "import os\nprint(open('data.txt').read(), os.environ.get('SECRET'))",
            &[("data.txt", b"hi")],
            &limits(),
        )
        .unwrap();
        assert!(out.success(), "{out:?}");
        assert_eq!(out.stdout.trim(), "hi None");
    }

    #[test]
    fn infinite_loops_time_out_and_output_is_capped() {
        let l = Limits {
            timeout: Duration::from_millis(500),
            ..limits()
        };
        let out = run_python("python3", "while True:\n    pass\n", &[], &l).unwrap();
        assert_eq!(out.status, Status::TimedOut);
        let l = Limits {
            output_bytes: 1000,
            ..limits()
        };
        let out = run_python("python3", "print('x' * 10_000_000)", &[], &l).unwrap();
        assert!(out.truncated);
        assert_eq!(out.stdout.len(), 1000);
    }

    /// Whether a process whose command line contains `marker` is running, a moment after a run.
    fn running(marker: &str) -> bool {
        std::thread::sleep(Duration::from_millis(100));
        std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
            std::fs::read(e.path().join("cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(marker))
        })
    }

    /// A daemon (forked, `setsid`, holding the output pipe) neither holds the run past its end
    /// nor, where the kernel gives runs their own PID namespace, outlives it.
    #[test]
    fn a_daemon_the_program_starts_ends_with_it() {
        let marker = format!("1000.{}", std::process::id());
        let script = format!(
            "import os, sys\nif os.fork() == 0:\n    os.setsid()\n    os.execvp('sleep', ['sleep', '{marker}'])\nprint('parent done')\nsys.stdout.flush()\n"
        );
        let started = Instant::now();
        let out = run_python("python3", &script, &[], &limits()).unwrap();
        assert!(out.success(), "{out:?}");
        assert_eq!(out.stdout.trim(), "parent done");
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "{:?}",
            started.elapsed()
        );
        if pid_isolated() {
            assert!(!running(&marker), "the daemon outlived the run");
        }
    }

    /// A program that leaves the process group the timeout kills is killed all the same.
    #[test]
    fn a_program_that_leaves_its_group_is_still_stopped_by_the_timeout() {
        let marker = format!("2000.{}", std::process::id());
        let script = format!(
            "import os\ntry:\n    os.setsid()\nexcept OSError:\n    pass\nos.execvp('sleep', ['sleep', '{marker}'])\n"
        );
        let l = Limits {
            timeout: Duration::from_millis(500),
            ..limits()
        };
        let out = run_python("python3", &script, &[], &l).unwrap();
        assert_eq!(out.status, Status::TimedOut, "{out:?}");
        assert!(!running(&marker), "the program outlived its timeout");
    }

    #[test]
    fn memory_is_limited() {
        let out = run_python(
            "python3",
            "x = bytearray(8 << 30)\nprint('allocated')",
            &[],
            &limits(),
        )
        .unwrap();
        assert!(!out.success());
        assert!(out.stderr.contains("MemoryError"), "{out:?}");
    }

    #[test]
    fn dropped_privileges_protect_files_outside_the_sandbox() {
        if !is_root() {
            return; // Not root: the program already cannot touch what it does not own.
        }
        let outside =
            std::env::temp_dir().join(format!("clarifycoder-victim-{}", std::process::id()));
        std::fs::write(&outside, "keep me").unwrap();
        let script = format!(
            "import os\nopen('mine.txt', 'w').write('ok')\ntry:\n    os.remove({:?})\n    print('deleted')\nexcept OSError:\n    print('denied')",
            outside.display().to_string()
        );
        let l = Limits {
            drop_privileges: true,
            ..limits()
        };
        let out = run_python("/usr/bin/python3", &script, &[], &l).unwrap();
        assert!(out.success(), "{out:?}");
        assert_eq!(out.stdout.trim(), "denied");
        assert_eq!(std::fs::read_to_string(&outside).unwrap(), "keep me");
        std::fs::remove_file(&outside).unwrap();
    }

    #[test]
    fn no_network_when_the_kernel_allows_it() {
        let script = "import socket\ntry:\n    socket.create_connection(('127.0.0.1', 9), timeout=1)\n    print('connected')\nexcept OSError as e:\n    print('blocked', e.errno)";
        let out = run_python("python3", script, &[], &limits()).unwrap();
        assert!(out.success(), "{out:?}");
        assert!(out.stdout.starts_with("blocked"), "{out:?}");
        if network_isolated() {
            // No loopback interface at all in a fresh namespace: "network is unreachable".
            assert!(out.stdout.contains("101"), "{out:?}");
        }
    }

    /// Without root, a run's PID and network namespaces live in a user namespace of its own.
    /// As root, this test runs itself again as `nobody` (where this kernel lets `nobody` make a
    /// user namespace and `nobody` may execute this test binary) and checks what `nobody` gets.
    #[test]
    fn without_root_runs_are_isolated_in_a_user_namespace() {
        use std::os::unix::process::CommandExt;
        const AS_NOBODY: &str = "CLARIFYCODER_SANDBOX_TEST_AS_NOBODY";
        if std::env::var_os(AS_NOBODY).is_some() {
            assert!(!is_root());
            assert!(pid_isolated(), "no PID namespace for nobody");
            assert!(network_isolated(), "no network namespace for nobody");
            a_daemon_the_program_starts_ends_with_it();
            no_network_when_the_kernel_allows_it();
            let out = run_python("python3", "import os\nprint(os.getuid())", &[], &limits());
            assert_eq!(
                out.unwrap().stdout.trim(),
                NOBODY.to_string(),
                "the program's own id"
            );
            return;
        }
        if !is_root() {
            return; // The other tests ran as this user already.
        }
        let as_nobody = |program: &Path| {
            let mut cmd = Command::new(program);
            cmd.uid(NOBODY).gid(NOGROUP).env("TMPDIR", "/tmp");
            cmd
        };
        let probe = as_nobody(Path::new("unshare"))
            .args(["--user", "--pid", "--fork", "-n", "true"])
            .stderr(Stdio::null())
            .status();
        if !probe.is_ok_and(|s| s.success()) {
            eprintln!("skipped: this kernel lets no unprivileged user make a user namespace");
            return;
        }
        let name = "sandbox::tests::without_root_runs_are_isolated_in_a_user_namespace";
        let out = match as_nobody(&std::env::current_exe().unwrap())
            .args([name, "--exact", "--nocapture", "--test-threads", "1"])
            .env(AS_NOBODY, "1")
            .output()
        {
            Ok(out) => out,
            Err(e) => {
                eprintln!("skipped: nobody cannot run this test binary ({e})");
                return;
            }
        };
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stdout}\n{stderr}");
        assert!(stdout.contains("1 passed"), "{stdout}\n{stderr}");
    }
}
