//! Socket activation (`sd_listen_fds(3)`): the program gets its sockets at
//! 3, 4, ... and `LISTEN_FDS`, `LISTEN_FDNAMES` and `LISTEN_PID` in its
//! environment, `LISTEN_PID` being the program's own pid, which
//! `sd_listen_fds` checks before it uses anything.
//!
//! The pid is known only in the child, and std makes the child's
//! environment after the `pre_exec` hooks ran (it points `environ` at the
//! envp it built before the fork, then calls `execvp`), so no hook can add
//! a variable to it. So the hook execs the program itself, the way std
//! would: everything (program, argv, an envp with a `LISTEN_PID=` entry of
//! fixed width) is built in the parent when the command gets its value; in
//! the child the hook writes the pid's digits into that entry, points
//! `environ` at the envp and calls `execvp(3)`, allocating nothing. If that
//! fails, the hook returns the error and std reports it to the parent as
//! ever (a missing program is `NotFound`).
//!
//! What that costs, and the user docs say: the environment is the one the
//! command has when [`CommandExt::child_fds`](super::CommandExt::child_fds)
//! is called (this process's, with the command's `env`/`env_remove` calls
//! applied; `env_clear` cannot be seen on stable Rust and is refused
//! nowhere: do not combine them), `argv[0]` is the program (an `arg0`
//! override cannot be seen either), and `pre_exec` hooks registered after
//! `child_fds` never run.

use std::collections::BTreeMap;
use std::ffi::{CString, OsString};
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::process::Command;

/// `LISTEN_PID=` and room for any `pid_t` in decimal, and the NUL.
const PID_ENTRY: usize = "LISTEN_PID=".len() + 10 + 1;

/// A checked socket name for `LISTEN_FDNAMES`: what `sd_listen_fds` accepts
/// (printable ASCII without `:`, at most 255 bytes; systemd's
/// `fdname_is_valid`).
pub(super) fn check_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.len() > 255 {
        return Err("must have 1 to 255 bytes");
    }
    if !name
        .bytes()
        .all(|b| (b' '..=b'~').contains(&b) && b != b':')
    {
        return Err("must be printable ASCII without ':'");
    }
    Ok(())
}

/// What the hook needs to exec the program with the activation variables:
/// built in the parent, only written (the pid's digits) and read in the
/// child.
#[derive(Debug)]
pub(super) struct Exec {
    program: CString,
    /// Kept alive for `argv`'s pointers.
    _args: Vec<CString>,
    argv: Vec<*const libc::c_char>,
    /// Kept alive for `envp`'s pointers.
    _vars: Vec<CString>,
    /// `LISTEN_PID=` and the digits the child writes, NUL-terminated.
    pid_entry: Box<[u8; PID_ENTRY]>,
    envp: Vec<*const libc::c_char>,
}

// SAFETY: the raw pointers point into `_args`, `_vars` and `pid_entry`,
// which the value owns and never moves (heap buffers of CStrings and a
// Box); nothing else aliases them. The child writes `pid_entry` through
// `&mut Exec` only.
unsafe impl Send for Exec {}
// SAFETY: as above; `&Exec` gives no way to write.
unsafe impl Sync for Exec {}

impl Exec {
    /// Capture `cmd`'s program, arguments and environment (see the module
    /// docs for what cannot be seen), with `LISTEN_FDS=count`,
    /// `LISTEN_FDNAMES` and a `LISTEN_PID=` entry replacing any inherited
    /// ones.
    ///
    /// Not async-signal-safe (parent only).
    ///
    /// # Errors
    /// `InvalidInput` for a program, argument or variable with a NUL byte
    /// (std would refuse the spawn for the same reason).
    pub(super) fn capture(cmd: &Command, names: &[String]) -> io::Result<Exec> {
        let nul = |what: &str| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("ChildFds::listen_fd: the command's {what} has a NUL byte"),
            )
        };
        let program = CString::new(cmd.get_program().as_bytes()).map_err(|_| nul("program"))?;
        let mut args = vec![program.clone()];
        for arg in cmd.get_args() {
            args.push(CString::new(arg.as_bytes()).map_err(|_| nul("argument"))?);
        }
        let mut env: BTreeMap<OsString, OsString> = std::env::vars_os().collect();
        for (key, value) in cmd.get_envs() {
            match value {
                Some(value) => env.insert(key.to_owned(), value.to_owned()),
                None => env.remove(key),
            };
        }
        env.retain(|key, _| !key.as_bytes().starts_with(b"LISTEN_"));
        let mut vars = Vec::with_capacity(env.len() + 2);
        for (key, value) in env {
            let mut entry = key.into_vec();
            entry.push(b'=');
            entry.extend_from_slice(value.as_bytes());
            vars.push(CString::new(entry).map_err(|_| nul("environment"))?);
        }
        vars.push(CString::new(format!("LISTEN_FDS={}", names.len())).map_err(|_| nul("count"))?);
        vars.push(
            CString::new(format!("LISTEN_FDNAMES={}", names.join(":")))
                .map_err(|_| nul("socket name"))?,
        );
        let mut pid_entry = Box::new([0u8; PID_ENTRY]);
        pid_entry[.."LISTEN_PID=".len()].copy_from_slice(b"LISTEN_PID=");
        let argv = args
            .iter()
            .map(|a| a.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect();
        let envp = vars
            .iter()
            .map(|v| v.as_ptr())
            .chain([pid_entry.as_ptr().cast(), std::ptr::null()])
            .collect();
        Ok(Exec {
            program,
            _args: args,
            argv,
            _vars: vars,
            pid_entry,
            envp,
        })
    }

    /// In the child: write our pid into `LISTEN_PID=`, point `environ` at
    /// the envp and `execvp` the program. Returns only on failure, with
    /// `environ` put back.
    ///
    /// Async-signal-safe, allocation-free (`getpid`, `execvp`; glibc's
    /// `execvp` searches `PATH` on the stack).
    pub(super) fn exec(&mut self) -> io::Error {
        let digits = &mut self.pid_entry["LISTEN_PID=".len()..];
        crate::sys::write_decimal(digits, crate::sys::getpid().unsigned_abs());
        // SAFETY: in the child, one thread; `program`, `argv` and `envp` are
        // NUL-terminated and outlive the call (owned by `self`).
        unsafe {
            crate::sys::exec_with_environ(
                self.program.as_ptr(),
                self.argv.as_ptr(),
                self.envp.as_ptr(),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pids_are_written_in_decimal_with_their_nul() {
        for (pid, text) in [
            (0, "0"),
            (7, "7"),
            (4194304, "4194304"),
            (u32::MAX, "4294967295"),
        ] {
            let mut out = [0xffu8; 11];
            crate::sys::write_decimal(&mut out, pid);
            let end = out.iter().position(|&b| b == 0).unwrap();
            assert_eq!(&out[..end], text.as_bytes());
        }
    }

    #[test]
    fn names_are_checked_as_systemd_does() {
        assert!(check_name("http").is_ok());
        assert!(check_name("a.b-c_d").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name("a:b").is_err());
        assert!(check_name("caf\u{e9}").is_err());
        assert!(check_name("tab\there").is_err());
        assert!(check_name(&"x".repeat(256)).is_err());
    }

    #[test]
    fn the_environment_replaces_inherited_listen_variables_and_applies_the_commands() {
        let mut cmd = Command::new("prog");
        cmd.arg("one")
            .env("FDTABLE_ACTIVATION_TEST", "yes")
            .env("LISTEN_FDS", "99")
            .env_remove("PATH");
        let exec = Exec::capture(&cmd, &["a".into(), "b".into()]).unwrap();
        // SAFETY: NULL-terminated arrays of NUL-terminated strings owned by
        // `exec`.
        let read = |list: &[*const libc::c_char]| -> Vec<String> {
            list.iter()
                .take_while(|p| !p.is_null())
                .map(|&p| {
                    unsafe { std::ffi::CStr::from_ptr(p) }
                        .to_string_lossy()
                        .into_owned()
                })
                .collect()
        };
        assert_eq!(read(&exec.argv), ["prog", "one"]);
        let env = read(&exec.envp);
        assert!(
            env.contains(&"FDTABLE_ACTIVATION_TEST=yes".into()),
            "{env:?}"
        );
        assert!(env.contains(&"LISTEN_FDS=2".into()), "{env:?}");
        assert!(env.contains(&"LISTEN_FDNAMES=a:b".into()), "{env:?}");
        assert!(!env.iter().any(|v| v.starts_with("PATH=")), "{env:?}");
        assert_eq!(env.iter().filter(|v| v.starts_with("LISTEN_")).count(), 3);
        assert_eq!(env.last().map(String::as_str), Some("LISTEN_PID="));
    }
}
