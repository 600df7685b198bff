//! A short walk through the fdtable API. Run it with
//! `cargo run --example tour`.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;

use fdtable::FdTable;
use nix::fcntl::{fcntl, FcntlArg};

/// Linux lists this process's descriptors in `/proc/self/fd`; macOS (and
/// FreeBSD with `fdescfs` mounted) in `/dev/fd`.
const FD_DIR: &str = if cfg!(target_os = "linux") {
    "/proc/self/fd"
} else {
    "/dev/fd"
};

fn open_fds() -> usize {
    std::fs::read_dir(FD_DIR).map_or(0, |dir| dir.count())
}

fn main() -> std::io::Result<()> {
    let table = FdTable::global();
    let baseline = open_fds();
    println!("open descriptors at start: {baseline}");

    // 1. Track resources. The table takes ownership; the handle derefs to them.
    let null = table.track(File::open("/dev/null")?)?;
    let zero = table.track(File::open("/dev/zero")?)?;
    let (left, right) = UnixStream::pair()?;
    let mut left = table.track(left)?;
    let mut right = table.track(right)?;
    println!(
        "tracked /dev/null={} /dev/zero={} socketpair={},{}  len={}",
        null.as_raw_fd(),
        zero.as_raw_fd(),
        left.as_raw_fd(),
        right.as_raw_fd(),
        table.len()
    );

    left.write_all(b"hello")?;
    let mut buf = [0u8; 5];
    right.read_exact(&mut buf)?;
    println!(
        "through Deref: sent and received {:?}",
        std::str::from_utf8(&buf).unwrap()
    );

    // 2. Walk. Callbacks may drop handles, even the one being visited: the
    //    number stays valid until the callback returns.
    let zero_fd = zero.as_raw_fd();
    let mut zero = Some(zero);
    let mut visited = Vec::new();
    table.for_each(|fd| {
        let n = fd.as_raw_fd();
        visited.push(n);
        if n == zero_fd {
            drop(zero.take());
            let still_open = fcntl(fd, FcntlArg::F_GETFD).is_ok();
            println!("  visiting {n}: dropped its handle inside the walk; still open until we return: {still_open}");
        }
    });
    println!(
        "walk visited {visited:?}; /dev/zero closed after its callback: contains({zero_fd}) = {}",
        table.contains(zero_fd)
    );

    // 3. close() reports close(2)'s result.
    null.close()?;
    println!("closed /dev/null explicitly; len={}", table.len());

    // 4. close_all: what a Ctrl-C handler's event loop would call. The sockets'
    //    files are released now (the peer sees EOF, blocked readers wake), but
    //    the numbers stay reserved until the handles drop.
    let report = table.close_all();
    println!(
        "close_all released {} (errors: {}); len={} contains({})={}",
        report.released(),
        report.errors().len(),
        table.len(),
        left.as_raw_fd(),
        table.contains(left.as_raw_fd())
    );
    match left.write_all(b"x") {
        Ok(()) => println!("write after close_all unexpectedly worked"),
        Err(e) => println!("write through a retired handle fails: {e}"),
    }
    drop(left);
    drop(right);

    println!(
        "open descriptors at end: {} (baseline {baseline}); swallowed close errors: {}",
        open_fds(),
        table.swallowed_close_errors()
    );
    Ok(())
}
