//! Recipe: a tokio server that ends every connection on Ctrl-C or SIGTERM
//! and dies by the signal. Needs the `tokio` feature.
//!
//! ```text
//! cargo run --features tokio --example tokio_server   # then: nc 127.0.0.1 <port>; kill -TERM <pid>
//! ```
use std::io;

use fdtable::{AsyncInterrupts, FdTable, Interrupts, Signal, Tracked};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[tokio::main]
async fn main() -> io::Result<()> {
    let table = FdTable::global();
    let signals = Interrupts::builder(Signal::Interrupt)
        .signal(Signal::Terminate)
        .install()?;
    let signals = AsyncInterrupts::new(signals)?;
    let listener = table.track(TcpListener::bind("127.0.0.1:0").await?)?;
    println!(
        "listening on {} (pid {})",
        listener.local_addr()?,
        std::process::id()
    );
    let received = loop {
        tokio::select! {
            received = signals.recv() => break received?,
            accepted = listener.accept() => {
                let connection = table.track(accepted?.0)?;
                tokio::spawn(echo(connection));
            }
        }
    };
    table.seal(); // no connection tracked after this escapes
                  // Every connection shut down at once: clients see end-of-file, and the
                  // tasks reading them end.
    let report = table.close_all();
    println!("released {}", report.released());
    Interrupts::die_by_signal(received.signal()) // status 143 for SIGTERM
}

async fn echo(mut connection: Tracked<'static, TcpStream>) {
    let mut buf = [0u8; 1024];
    while let Ok(n @ 1..) = connection.read(&mut buf).await {
        if connection.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
}
