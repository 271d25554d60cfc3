//! The SLO engine against a real Prometheus behind TLS, client certificates and basic auth
//! (`--web.config.file`), and against a loopback server that checks a bearer token (Prometheus's
//! web config has no bearer tokens). With the CA, the client certificate and the credentials the
//! engine reads the SLIs; without the CA, without the client certificate or with a wrong password
//! every query fails and the verdict names the error; a rotated password or token file is used
//! from the next pass on.
//!
//! The PKI is made for each run with the `openssl` CLI (which `tests/cluster/up.sh` needs too).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use kube::runtime::reflector::ObjectRef;
use tailwarden_crds::RetailPipeline;
use tailwarden_operator::engine::{Engine, EngineConfig, PassReport};
use tailwarden_operator::metrics::Metrics;
use tailwarden_operator::prometheus_access::PrometheusAccess;
use tailwarden_operator::verdict::{Verdict, Verdicts};
use tailwarden_tests::prometheus::Prometheus;
use tailwarden_tests::scrape_target::{ScrapeTarget, Traffic};
use tailwarden_tests::wait_for;

const USER: &str = "tailwarden";
const PASSWORD: &str = "tw-test-basic-password";
/// bcrypt (cost 4, the minimum: Prometheus checks it on every request) of `PASSWORD`.
const PASSWORD_BCRYPT: &str = "$2b$04$Sz/xU5L25isx4.d4HaHWXuRWHwnCK6jl2kV8W275uvm8Bj3XRXrFO";

fn pipeline() -> Arc<RetailPipeline> {
    Arc::new(tailwarden_tests::shop_web_pipeline())
}

fn fresh_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tailwarden-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A throwaway CA, a serving certificate for 127.0.0.1 and a client certificate signed by it, and
/// a second CA that signed neither. ECDSA P-256, valid for a day.
fn pki(dir: &Path) {
    for ca in ["ca", "other-ca"] {
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                &format!("{ca}.key"),
                "-out",
                &format!("{ca}.crt"),
                "-days",
                "1",
                "-subj",
                &format!("/CN=tailwarden-test-{ca}"),
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        );
    }
    for (name, ext) in [
        (
            "server",
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n",
        ),
        (
            "client",
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n",
        ),
    ] {
        std::fs::write(dir.join(format!("{name}.ext")), ext).unwrap();
        openssl(
            dir,
            &[
                "req",
                "-new",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
                "-subj",
                &format!("/CN=tailwarden-test-{name}"),
            ],
        );
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "1",
                "-extfile",
                &format!("{name}.ext"),
                "-out",
                &format!("{name}.crt"),
            ],
        );
    }
}

/// Runs one pass (a little in the past, so the last scrape is in) and returns the report and verdict.
async fn pass(engine: &Engine, verdicts: &Verdicts) -> (PassReport, Verdict) {
    let now = Timestamp::now() - SignedDuration::from_secs(1);
    let report = engine.pass(&[pipeline()], now).await;
    (
        report,
        verdicts
            .get(&ObjectRef::new("web").within("shop"))
            .expect("a verdict"),
    )
}

fn engine(url: &str, access: PrometheusAccess) -> (Engine, Verdicts) {
    let verdicts = Verdicts::default();
    let engine = Engine::new(
        EngineConfig {
            default_prometheus: Some(url.to_owned()),
            query_timeout: Duration::from_secs(5),
            access,
            ..EngineConfig::default()
        },
        verdicts.clone(),
        Arc::new(Metrics::default()),
    );
    (engine, verdicts)
}

/// Every query of the pass failed, and the verdict names `error` (not only "no data").
#[track_caller]
fn fails_with(report: &PassReport, verdict: &Verdict, error: &str) {
    assert!(report.queries > 0);
    assert_eq!(report.failed_queries, report.queries, "every query fails");
    let named = verdict
        .missing
        .iter()
        .find(|m| m.starts_with("query failed") && m.contains(error));
    let Some(named) = named else {
        panic!("the verdict names {error:?}: {:#?}", verdict.missing);
    };
    eprintln!("{named}");
    assert!(
        !verdict
            .missing
            .iter()
            .any(|m| m.contains(PASSWORD) || m.contains("wrong-password")),
        "a password leaked into the verdict: {:#?}",
        verdict.missing
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Prometheus: run tests/run.sh"]
async fn engine_reads_prometheus_over_tls_with_a_client_cert_and_basic_auth() {
    let dir = fresh_dir("prom-tls");
    pki(&dir);
    let file = |name: &str| dir.join(name);
    std::fs::write(file("username"), format!("{USER}\n")).unwrap();
    std::fs::write(file("password"), format!("{PASSWORD}\n")).unwrap();
    std::fs::write(file("wrong-password"), "wrong-password\n").unwrap();
    let web_config = format!(
        "tls_server_config:\n  cert_file: {}\n  key_file: {}\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {}\nbasic_auth_users:\n  {USER}: {PASSWORD_BCRYPT}\n",
        file("server.crt").display(),
        file("server.key").display(),
        file("ca.crt").display(),
    );
    let target = ScrapeTarget::start("shop", "web").await;
    target.set(Traffic {
        errors_per_sec: 2.0,
        ..Traffic::healthy()
    });
    let prometheus = Prometheus::scraping_with_web_config(target.address, &web_config, true).await;
    assert!(prometheus.url.starts_with("https://"), "{}", prometheus.url);
    let full = PrometheusAccess {
        ca_file: Some(file("ca.crt")),
        cert_file: Some(file("client.crt")),
        key_file: Some(file("client.key")),
        basic_auth_username_file: Some(file("username")),
        basic_auth_password_file: Some(file("password")),
        ..Default::default()
    };
    full.validate().expect("the settings are valid");

    // With everything: the SLIs are read (once Prometheus has scraped a few times).
    let (engine_ok, verdicts_ok) = engine(&prometheus.url, full.clone());
    let verdict = wait_for(
        "the SLIs over TLS + basic auth",
        Duration::from_secs(60),
        || async {
            let (report, v) = pass(&engine_ok, &verdicts_ok).await;
            (report.failed_queries == 0 && v.slis.availability_percent.is_some()).then_some(v)
        },
    )
    .await;
    assert!(
        !verdict
            .missing
            .iter()
            .any(|m| m.starts_with("query failed")),
        "{:#?}\n{}",
        verdict.missing,
        prometheus.log()
    );

    // Without the CA (the system roots do not know it): the TLS error is named.
    let (e, v) = engine(
        &prometheus.url,
        PrometheusAccess {
            ca_file: None,
            ..full.clone()
        },
    );
    let (report, verdict) = pass(&e, &v).await;
    fails_with(&report, &verdict, "invalid peer certificate");
    // With a CA that did not sign the serving certificate: the same.
    let (e, v) = engine(
        &prometheus.url,
        PrometheusAccess {
            ca_file: Some(file("other-ca.crt")),
            ..full.clone()
        },
    );
    let (report, verdict) = pass(&e, &v).await;
    fails_with(&report, &verdict, "invalid peer certificate");
    // Without the client certificate: the handshake is refused.
    let (e, v) = engine(
        &prometheus.url,
        PrometheusAccess {
            cert_file: None,
            key_file: None,
            ..full.clone()
        },
    );
    let (report, verdict) = pass(&e, &v).await;
    fails_with(&report, &verdict, "received fatal alert: BadCertificate");
    // A wrong password: Prometheus answers 401, and the verdict says so.
    let (e, v) = engine(
        &prometheus.url,
        PrometheusAccess {
            basic_auth_password_file: Some(file("wrong-password")),
            ..full.clone()
        },
    );
    let (report, verdict) = pass(&e, &v).await;
    fails_with(&report, &verdict, "401 Unauthorized");
    // No credentials at all: 401 too.
    let (e, v) = engine(
        &prometheus.url,
        PrometheusAccess {
            basic_auth_username_file: None,
            basic_auth_password_file: None,
            ..full.clone()
        },
    );
    let (report, verdict) = pass(&e, &v).await;
    fails_with(&report, &verdict, "401 Unauthorized");

    // Rotation: the password file of the working engine changes; the next pass uses it.
    std::fs::write(file("password"), "wrong-password\n").unwrap();
    let (report, verdict) = pass(&engine_ok, &verdicts_ok).await;
    fails_with(&report, &verdict, "401 Unauthorized");
    std::fs::write(file("password"), format!("{PASSWORD}\n")).unwrap();
    let (report, verdict) = pass(&engine_ok, &verdicts_ok).await;
    assert_eq!(report.failed_queries, 0, "{:#?}", verdict.missing);

    drop(prometheus);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Prometheus's web config has no bearer tokens (they are for a proxy in front of it): a loopback
/// server in Prometheus's API shape checks the `Authorization` header instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_sends_the_bearer_token_of_the_file_as_it_is_now() {
    let dir = fresh_dir("prom-bearer");
    let token_file = dir.join("token");
    std::fs::write(&token_file, "first-token\n").unwrap();
    let expected = Arc::new(Mutex::new("Bearer first-token".to_owned()));
    let seen = Arc::new(Mutex::new(Vec::<Option<String>>::new()));
    let app = {
        let expected = expected.clone();
        let seen = seen.clone();
        axum::Router::new().route(
            "/api/v1/query",
            axum::routing::get(move |headers: axum::http::HeaderMap| {
                let expected = expected.clone();
                let seen = seen.clone();
                async move {
                    let got = headers
                        .get(axum::http::header::AUTHORIZATION)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned);
                    seen.lock().unwrap().push(got.clone());
                    if got.as_deref() == Some(expected.lock().unwrap().as_str()) {
                        (
                            axum::http::StatusCode::OK,
                            [(axum::http::header::CONTENT_TYPE, "application/json")],
                            r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#,
                        )
                    } else {
                        (
                            axum::http::StatusCode::UNAUTHORIZED,
                            [(axum::http::header::CONTENT_TYPE, "text/plain")],
                            "Unauthorized\n",
                        )
                    }
                }
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let (engine, verdicts) = engine(
        &url,
        PrometheusAccess {
            bearer_token_file: Some(token_file.clone()),
            ..Default::default()
        },
    );
    let (report, verdict) = pass(&engine, &verdicts).await;
    assert_eq!(report.failed_queries, 0, "{:#?}", verdict.missing);
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), report.queries);
        assert!(
            seen.iter()
                .all(|h| h.as_deref() == Some("Bearer first-token")),
            "{seen:?}"
        );
    }

    // The server now wants a new token; the engine still sends the old one until the file changes.
    *expected.lock().unwrap() = "Bearer second-token".into();
    let (report, verdict) = pass(&engine, &verdicts).await;
    fails_with(&report, &verdict, "401 Unauthorized");
    assert!(
        !verdict.missing.iter().any(|m| m.contains("first-token")),
        "the token leaked into the verdict: {:#?}",
        verdict.missing
    );
    std::fs::write(&token_file, "second-token").unwrap();
    let (report, verdict) = pass(&engine, &verdicts).await;
    assert_eq!(report.failed_queries, 0, "{:#?}", verdict.missing);

    // A token file that disappears fails the pass with the flag's name, not silently.
    std::fs::remove_file(&token_file).unwrap();
    let (report, verdict) = pass(&engine, &verdicts).await;
    assert_eq!(report.queries, 0);
    assert!(
        verdict
            .missing
            .iter()
            .any(|m| m.contains("--prometheus-bearer-token-file")),
        "{:#?}",
        verdict.missing
    );
    let _ = std::fs::remove_dir_all(&dir);
}
