//! The baseline of benchmark (e): a minimal axum server answering every GET with a small JSON
//! body, driven by the same loadgen read load as the data plane.
//!
//! `cargo run --release -p tailwarden-dataplane --example hello_world -- 127.0.0.1:28091`

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:28091".into());
    let app = axum::Router::new().fallback(|| async {
        (
            [("content-type", "application/json")],
            r#"{"hello":"world"}"#,
        )
    });
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    axum::serve(listener, app).await
}
