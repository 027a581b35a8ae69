//! `cargo run --release -p metaloop-mesh --example bench [-- --events N] [--no-nats]`
//!
//! Prints the mesh benchmark: Ed25519 verifications per second on one core and the ingest
//! rate without a bus, through the in-process bus and through NATS JetStream
//! (`METALOOP_TEST_NATS`, default `nats://127.0.0.1:4222`), with their ratios.

use metaloop_mesh::bench::{BenchOptions, run};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut options = BenchOptions::default();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--events" => {
                let n = args.next().ok_or("--events needs a number")?;
                options.events = n.parse().map_err(|e| format!("--events {n}: {e}"))?;
            }
            "--no-nats" => options.nats_url = None,
            other => {
                return Err(
                    format!("unknown argument {other:?} (use --events N, --no-nats)").into(),
                );
            }
        }
    }
    run(&options, &mut std::io::stdout()).await?;
    Ok(())
}
